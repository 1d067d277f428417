"""The serialize-once recipe for a large image dataset, end to end.

1. Write JPEG-encoded images with their labels into one LMDB file.
2. Read it back sequentially, shuffle in a buffer, decode, augment, batch.
3. Print a throughput table of the reading pipeline.

Run: python examples/lmdb_images.py   (needs the lmdb and image extras)
"""

import os
import tempfile

import cv2
import numpy as np

import dataflow as D
from dataflow import imgaug
from dataflow.debug import measure_throughput, throughput_table

QUICK = os.environ.get("DATAFLOW_EXAMPLE_QUICK") == "1"  # set by the test suite
NUM_IMAGES = 500 if QUICK else 5_000


class JpegSource(D.RNGDataFlow):
    """Synthetic 64x64 photos, JPEG-encoded as they would be on disk."""

    def __init__(self, num_images: int):
        self.num_images = num_images
        self.set_seed(0)

    def __len__(self):
        return self.num_images

    def __iter__(self):
        for _ in range(self.num_images):
            label = int(self.rng.randint(10))
            image = np.full((64, 64, 3), label * 25, np.uint8)
            image += self.rng.randint(0, 20, image.shape, dtype=np.uint8)
            ok, jpeg = cv2.imencode(".jpg", image)
            assert ok
            yield [np.frombuffer(jpeg.tobytes(), np.uint8), label]


def decode(jpeg: np.ndarray) -> np.ndarray:
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def reading_pipeline(path: str, stages: int) -> D.DataFlow:
    df = D.LMDBSerializer.load(path, shuffle=False)  # sequential: the fast way to read
    if stages >= 2:
        df = D.LocallyShuffleData(df, buffer_size=200, seed=0)
    if stages >= 3:
        df = D.MapDataComponent(df, decode, index=0)
    if stages >= 4:
        df = D.AugmentImageComponent(df, [imgaug.RandomCrop(56), imgaug.Flip(horiz=True)])
    if stages >= 5:
        df = D.BatchData(df, 32)
    return df


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.lmdb")
        D.LMDBSerializer.save(JpegSource(NUM_IMAGES), path)
        print(
            f"wrote {NUM_IMAGES:,} JPEG images to one LMDB file "
            f"({os.path.getsize(path) / 1e6:.1f} MB)"
        )

        names = ["read (sequential)", "+ local shuffle", "+ decode", "+ crop & flip", "+ batch 32"]
        results = []
        for stages, name in enumerate(names, start=1):
            with reading_pipeline(path, stages) as df:
                df.reset_state()
                results.append(measure_throughput(df, size=len(df), name=name))
        with reading_pipeline(path, len(names)) as df:
            df.reset_state()
            images, labels = next(iter(df))
        print(f"one batch: images {images.shape} {images.dtype}, labels {labels.shape}\n")
        print(throughput_table(results))


if __name__ == "__main__":
    main()
