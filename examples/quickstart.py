"""Quickstart: a complete input pipeline on synthetic data.

Builds the pipeline stage by stage (source, per-image map, local shuffle,
batching), measures each stage under a progress bar, describes one batch, and
prints a throughput table. No dataset download needed.

Run: python examples/quickstart.py
"""

import os

import numpy as np

import dataflow as D
from dataflow.debug import describe_datapoint, measure_throughput, throughput_table

QUICK = os.environ.get("DATAFLOW_EXAMPLE_QUICK") == "1"  # set by the test suite
NUM_IMAGES = 2_000 if QUICK else 20_000
BATCH_SIZE = 64


class SyntheticImages(D.RNGDataFlow):
    """A stand-in for a real dataset: random 32x32 RGB images, each with a label."""

    def __init__(self, num_images: int, seed: int = 0):
        self.num_images = num_images
        self.set_seed(seed)

    def __len__(self):
        return self.num_images

    def __iter__(self):
        for _ in range(self.num_images):
            image = self.rng.randint(0, 256, size=(32, 32, 3), dtype=np.uint8)
            yield [image, int(self.rng.randint(10))]


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 HWC in [0, 255] -> float32 in [0, 1], flipped left-right."""
    return image[:, ::-1].astype(np.float32) / 255.0


def pipeline(stages: int) -> D.DataFlow:
    """The first *stages* stages of the pipeline."""
    df = SyntheticImages(NUM_IMAGES)
    if stages >= 2:
        df = D.MapDataComponent(df, normalize, index=0)
    if stages >= 3:
        df = D.LocallyShuffleData(df, buffer_size=1000, seed=0)
    if stages >= 4:
        df = D.BatchData(df, BATCH_SIZE)
    return df


def main() -> None:
    names = ["source", "+ normalize", "+ local shuffle", f"+ batch {BATCH_SIZE}"]
    results = []
    for stages, name in enumerate(names, start=1):
        with pipeline(stages) as df:
            df.reset_state()
            size = len(df)
            results.append(measure_throughput(df, size=size, name=name))

    with pipeline(len(names)) as df:
        df.reset_state()
        images, labels = first_batch = next(iter(df))
        print("One batch of the full pipeline:")
        print(describe_datapoint(first_batch))
        assert images.shape == (BATCH_SIZE, 32, 32, 3) and labels.dtype == np.int32

    print(f"\nThroughput of each stage ({NUM_IMAGES:,} images; a batch counts as one datapoint):")
    print(throughput_table(results))


if __name__ == "__main__":
    main()
