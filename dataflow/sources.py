"""Sources: dataflows that produce datapoints from Python objects."""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

from .base import Datapoint, RNGDataFlow, _check_seed

__all__ = ["DataFromList"]


class DataFromList(RNGDataFlow):
    """Yield the datapoints of a list, in order or shuffled anew every pass."""

    def __init__(self, lst: List[Any], shuffle: bool = True, *, seed: Optional[int] = None):
        self.lst = lst
        self.shuffle = shuffle
        self.seed = _check_seed(seed)

    def __len__(self) -> int:
        return len(self.lst)

    def __iter__(self) -> Iterator[Datapoint]:
        if not self.shuffle:
            return iter(self.lst)
        return map(self.lst.__getitem__, self.rng.permutation(len(self.lst)).tolist())
