"""Loaders outside the tensorpack family, run as peers: the PyTorch DataLoader and grain.

Both are optional. :func:`import_torch` and :func:`import_grain` return ``None``
(and print a note) when the package cannot be imported, and the benchmarks
then skip their rows. Neither is a dependency of the project.

Each peer does the same work as the dataflow it is compared with, with the
same number of worker processes and the same batch size, written the way
each library's documentation writes it: a map-style ``Dataset`` and a
``DataLoader`` with the default collate function for PyTorch; a
``grain.MapDataset`` pipeline ending in ``mp_prefetch`` for grain (its
dataset API: in a trial on this work, ``grain.python.DataLoader``, which
runs the same machinery, moved small batches several times slower).
Everything a worker runs is defined at module level, so it pickles for
spawned workers (grain spawns its workers; PyTorch forks them on Linux).

:class:`LoaderAdapter` gives a peer's loader the surface the benchmark
trials use (``reset_state()``, repeated passes, ``close()``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

TORCH_NAME = "torch DataLoader"
GRAIN_NAME = "grain"


def import_torch() -> Optional[Any]:
    """``torch`` (with ``torch.utils.data`` loaded), or ``None`` with a note."""
    try:
        import torch
        import torch.utils.data  # noqa: F401
    except Exception as err:  # optional: any failure to import means "skip"
        print(
            f"note: torch is not importable ({type(err).__name__}: {err}); "
            f"the {TORCH_NAME} rows are skipped"
        )
        return None
    return torch


def import_grain() -> Optional[Any]:
    """``grain`` (quietly), or ``None`` with a note."""
    try:
        # grain logs that it cannot load jax's profiler when jax is absent.
        logging.getLogger("absl").setLevel(logging.ERROR)
        with contextlib.redirect_stderr(io.StringIO()):
            import grain
    except Exception as err:  # optional: any failure to import means "skip"
        print(
            f"note: grain is not importable ({type(err).__name__}: {err}); "
            f"the {GRAIN_NAME} rows are skipped"
        )
        return None
    return grain


def torch_version() -> Optional[str]:
    try:
        import torch
    except Exception:
        return None
    return str(torch.__version__)


class LoaderAdapter:
    """A peer's loader seen as a dataflow: ``reset_state()`` does nothing, every
    ``iter()`` is a pass of *loader*, ``close()`` calls *stop* once."""

    def __init__(self, loader: Any, stop: Callable[[], None]) -> None:
        self.loader, self._stop, self._closed = loader, stop, False

    def reset_state(self) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop()


# ---- the work: the same functions for every library ----------------------------------


SMALL = np.random.RandomState(0).rand(28, 28).astype("float32")


def small_item(index: int) -> List[Any]:
    """A small datapoint made from an index: ``[float32 (28, 28), int]``, one numpy op."""
    return [SMALL + np.float32(index % 7), index % 10]


def small_map(dp: List[Any]) -> List[Any]:
    """:func:`small_item` as a dataflow map function (datapoint ``[index]``)."""
    return small_item(dp[0])


def large_array() -> np.ndarray:
    return np.random.RandomState(0).randint(0, 256, (32, 224, 224, 3), dtype=np.uint8)


def decode_crop_flip(path: str, crop: int, rng: np.random.Generator) -> np.ndarray:
    """What dataflow's ``imread`` + ``RandomCrop(crop)`` + ``Flip(horiz=True)`` do: decode
    a JPEG with OpenCV, cut a random *crop* x *crop* window, mirror it with probability
    0.5. The mirror is ``cv2.flip`` (contiguous), because PyTorch's collate cannot take
    the negative strides of ``img[:, ::-1]``."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    out = img[y : y + crop, x : x + crop]
    return cv2.flip(out, 1) if rng.random() < 0.5 else out


# ---- PyTorch -------------------------------------------------------------------------


def one_thread(worker_id: int) -> None:
    """``worker_init_fn``: one intra-op thread per worker (as the DataLoader sets too)."""
    import torch

    torch.set_num_threads(1)


class SmallDataset:
    """Map-style dataset: item *i* is :func:`small_item` (*i*)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> List[Any]:
        return small_item(index)


class RepeatDataset:
    """Map-style dataset whose every item is the same pre-built array."""

    def __init__(self, array: np.ndarray, size: int) -> None:
        self.array, self.size = array, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> np.ndarray:
        return self.array


class ImageDataset:
    """Map-style dataset: item *i* is file *i* decoded, randomly cropped and flipped."""

    def __init__(self, files: Sequence[str], crop: int) -> None:
        self.files, self.crop = list(files), crop
        self.rng: Optional[np.random.Generator] = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.rng is None:  # one generator per worker, seeded by the DataLoader's seed
            import torch

            self.rng = np.random.default_rng(torch.initial_seed() % 2**32)
        return decode_crop_flip(self.files[index], self.crop, self.rng)


def torch_loader(torch: Any, dataset: Any, **kwargs: Any) -> LoaderAdapter:
    """A ``DataLoader`` over *dataset* with 2 persistent workers (so that passes after
    the first reuse them, as a runner's workers are reused), default collate."""
    loader = torch.utils.data.DataLoader(
        dataset, num_workers=2, persistent_workers=True, worker_init_fn=one_thread, **kwargs
    )

    def stop() -> None:
        it = loader._iterator  # the persistent workers' iterator, if one was started
        if it is not None:
            it._shutdown_workers()
            loader._iterator = None

    return LoaderAdapter(loader, stop)


def torch_small_batches(torch: Any, size: int, batch_size: int) -> LoaderAdapter:
    return torch_loader(torch, SmallDataset(size), batch_size=batch_size, drop_last=True)


def torch_large_arrays(torch: Any, array: np.ndarray, size: int) -> LoaderAdapter:
    """One pre-built array per item, no batching (``batch_size=None``): each arrives
    as a tensor the worker moved into shared memory."""
    return torch_loader(torch, RepeatDataset(array, size), batch_size=None)


def torch_images(torch: Any, files: Sequence[str], crop: int, batch_size: int) -> LoaderAdapter:
    return torch_loader(
        torch, ImageDataset(files, crop), batch_size=batch_size, shuffle=True, drop_last=True
    )


# ---- grain ---------------------------------------------------------------------------


def image_random_map(crop: int, path: str, rng: np.random.Generator) -> np.ndarray:
    """:func:`decode_crop_flip` with grain's per-record generator (for ``random_map``)."""
    return decode_crop_flip(path, crop, rng)


def grain_loader(grain: Any, ds: Any, read_threads: Optional[int] = None) -> LoaderAdapter:
    """*ds* (a ``grain.MapDataset`` without end) read by 2 worker processes
    (``mp_prefetch``): batches are made in the workers. Each worker reads with
    grain's default ``ReadOptions`` (16 threads), or with *read_threads*."""
    iterators: List[Any] = []
    options = None if read_threads is None else grain.ReadOptions(num_threads=read_threads)
    pipeline = ds.to_iter_dataset(options)
    pipeline = pipeline.mp_prefetch(grain.MultiprocessingOptions(num_workers=2))

    class Passes:
        def __iter__(self) -> Iterator[Any]:
            it = iter(pipeline)
            iterators.append(it)
            return it

    def stop() -> None:
        for it in iterators:
            it.close()  # stops its worker processes
        iterators.clear()

    return LoaderAdapter(Passes(), stop)


def grain_small_batches(grain: Any, size: int, batch_size: int) -> LoaderAdapter:
    ds = grain.MapDataset.range(size).repeat(None).map(small_item)
    return grain_loader(grain, ds.batch(batch_size, drop_remainder=True))


def grain_images(
    grain: Any,
    files: Sequence[str],
    crop: int,
    batch_size: int,
    read_threads: Optional[int] = None,
) -> LoaderAdapter:
    ds = grain.MapDataset.source(list(files)).shuffle(seed=0).repeat(None)
    ds = ds.random_map(functools.partial(image_random_map, crop), seed=0)
    return grain_loader(grain, ds.batch(batch_size, drop_remainder=True), read_threads)
