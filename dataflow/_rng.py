"""Every seed derivation of the library: where each random stream comes from.

Each stream is drawn from a ``numpy.random.SeedSequence``: a *root* (an int
seed, or fresh entropy from the operating system when there is none) and a
*spawn key*. The tree below is every derivation there is; the function that
makes each one is on the right.

.. code-block:: text

    runner seed S (the seed= of a runner or mapper)
    |-- (i,)  for worker i < num_workers  -> W_i, worker i's seed      worker_seeds
    `-- (SHARED_SEED_KEY,)                -> P, alike in every worker  shared_seed
    worker seed W_i (WorkerInfo.seed)
    |-- (c,)  c = 0, 1, ...               -> the c-th unseeded         stream_state
    |                                        generator reset there
    `-- (GLOBALS_KEY,) = (2**31,)         -> random and numpy.random   seed_globals
    own seed s (RNGDataFlow.seed, ImageAugmentor.seed)
    |-- ()                                -> its stream outside        stream_state
    |                                        workers and in worker 0
    `-- (i,)  for worker i >= 1           -> its stream in worker i    stream_state
    partition seed: a source's own seed s, else P
    `-- (PARTITION_KEY, pass_number)      -> the permutation that      partition
                                             partitions the indices
    augmentor seed s, sub-augmentor k: entropy [s, k]
                                          -> the seed of the k-th      child_seed
                                             sub-augmentor (a new s)
    no seed at all: fresh entropy, new at every call

Why no two streams collide: under one root the spawn keys differ. Worker
indices and reset counters are small numbers of one word; ``GLOBALS_KEY``
is ``2**31``, which a counter reaches only after two billion resets in one
worker; ``SHARED_SEED_KEY`` (the letters "SHARED", 48 bits) and the
two-element partition keys start with words no other key has. Seeds that
are themselves derived (``W_i``, ``P``, a sub-augmentor's seed) are 64-bit
hashes, so they meet a user's seed only by a 1 in 2**64 chance. The roots a
user chooses are separate: a runner and a source given the same int draw
``W_i`` and the source's stream in worker *i* from the same sequence, but a
worker seed is never a stream itself, only the root of the streams above.
(``SeedSequence`` reads an int as its 32-bit words, so entropy ``[s, k]``
is also the root of the seed ``s + k * 2**32`` when ``s < 2**32``.)
"""

from __future__ import annotations

import random
from typing import Iterator, List, Optional, Protocol, Tuple

import numpy as np

# Imported now, not on first use: numpy imports numpy.random lazily, and a Ctrl-C that
# lands in that import (inside a compiled module's set-up) is lost, not raised.
import numpy.random  # noqa: F401

from ._worker_state import current_state

__all__ = [
    "child_seed",
    "partition",
    "seed_globals",
    "seed_state",
    "shared_seed",
    "stream_state",
    "worker_seeds",
]

# Spawn keys that keep the seeds derived here apart from the per-worker streams
# (whose spawn keys are worker indices and reset counters: small numbers).
SHARED_SEED_KEY = 0x5348_4152_4544  # "SHARED"
PARTITION_KEY = 0x5041_5254  # "PART"
GLOBALS_KEY = 2**31


class _Seeded(Protocol):
    @property
    def seed(self) -> Optional[int]: ...


def worker_seeds(seed: Optional[int], n: int) -> List[Optional[int]]:
    """One seed per worker, all different, derived from *seed* (all ``None`` without one)."""
    if seed is None:
        return [None] * n
    return [
        int(child.generate_state(1, np.uint64)[0])
        for child in np.random.SeedSequence(seed).spawn(n)
    ]


def shared_seed(seed: Optional[int]) -> int:
    """The :attr:`WorkerInfo.shared_seed` of a runner with *seed*: derived from it,
    or fresh entropy when it is ``None``."""
    sequence = (
        np.random.SeedSequence()
        if seed is None
        else np.random.SeedSequence(seed, spawn_key=(SHARED_SEED_KEY,))
    )
    return int(sequence.generate_state(1, np.uint64)[0])


def stream_state(
    seed: Optional[int], worker: Optional[Tuple[int, Optional[int], Iterator[int]]] = None
) -> np.ndarray:
    """The 128-bit state that seeds a random generator with *seed*.

    *worker* is ``None`` outside workers, else the worker's index, its seed
    and its count of the generators it has reset without a seed.

    Outside workers: the stream of *seed* (``None``: fresh OS entropy).
    In worker *i*: an explicit *seed* gives a stream of its own for each
    worker (so copies of a seeded source do not repeat each other; worker 0
    keeps the stream it has outside workers); without
    one, the worker's seed gives each generator the worker resets its own
    stream, in the order they are reset; with neither, fresh entropy.
    """
    if worker is None:
        return np.random.SeedSequence(seed).generate_state(4)
    index, own_seed, counter = worker
    if seed is not None:  # worker 0 keeps the stream it has outside workers
        key = (index,) if index else ()
        return np.random.SeedSequence(seed, spawn_key=key).generate_state(4)
    if own_seed is None:
        return np.random.SeedSequence().generate_state(4)
    return np.random.SeedSequence(own_seed, spawn_key=(next(counter),)).generate_state(4)


def seed_state(seed: Optional[int]) -> np.ndarray:
    """The 128-bit state that seeds a dataflow's or an augmentor's ``RandomState``.

    :func:`stream_state` for the worker this code runs in (see
    :mod:`dataflow._worker_state`), or outside workers. ``None`` draws fresh
    entropy from the operating system, so every process and every
    ``reset_state()`` gets its own stream. An int gives the same stream
    every time. Inside a parallel worker every worker gets a stream of its
    own.
    """
    state = current_state()
    if state is None:
        return stream_state(seed)
    return stream_state(seed, (state.info.index, state.info.seed, state.counter))


def partition(seed: int, pass_number: int, n: int) -> np.ndarray:
    """The permutation of ``range(n)`` whose blocks are the workers' parts in
    pass *pass_number*, drawn from the partition seed *seed*."""
    entropy = np.random.SeedSequence(seed, spawn_key=(PARTITION_KEY, pass_number))
    return np.random.Generator(np.random.PCG64(entropy)).permutation(n)


def seed_globals(info: _Seeded) -> None:
    """Seed ``random`` and ``numpy.random`` for worker *info* (fresh entropy without a seed)."""
    if info.seed is None:
        entropy = np.random.SeedSequence()
    else:
        entropy = np.random.SeedSequence(info.seed, spawn_key=(GLOBALS_KEY,))
    words = entropy.generate_state(4)
    random.seed(int.from_bytes(words.tobytes(), "little"))
    np.random.seed(words)


def child_seed(seed: Optional[int], k: int) -> Optional[int]:
    """The seed of the *k*-th sub-augmentor of an augmentor seeded with *seed*."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0])
