"""Write a small synthetic data set in the MNIST file format, for the training examples.

The four gzipped IDX files ``dataflow.dataset.Mnist`` reads: 28x28 uint8
images where digit class *c* is a bright stroke in row band *c* (shifted
and placed at random) over noise, so that a small model learns it in a
few epochs. Not run on its own: the examples import it.
"""

import gzip
import os
import struct

import numpy as np


def write_idx(path, array):
    """One IDX file, gzipped: magic (unsigned bytes, ndim), the dimensions, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(directory, num_train, num_test, seed=0):
    """The training and test files of *num_train* and *num_test* images in *directory*."""
    rng = np.random.RandomState(seed)
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        labels = rng.randint(0, 10, size=n)
        images = rng.randint(0, 120, size=(n, 28, 28))
        for i, c in enumerate(labels):
            row = 2 + 2 * c + rng.randint(0, 2)
            start = rng.randint(2, 10)
            images[i, row : row + 2, start : start + 14] = 220
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels)
