"""Helpers of the profiler's tests: stages that take a known time, and finding a stage."""

from __future__ import annotations

import time

import numpy as np

from dataflow import DataFromList
from dataflow.profiling import ProfileReport, Stage

SLOW_S = 0.002  # the slow stage's time per datapoint; every other stage takes microseconds


def busy(seconds: float) -> None:
    """Keep a CPU busy for *seconds* (in Python: it holds the GIL)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def slow(x):
    busy(SLOW_S)
    return x


def keep(dp):
    return dp


def numbers(n: int):
    """*n* small datapoints in order: an int and a float32 array."""
    return DataFromList([[i, np.zeros(4, dtype="float32")] for i in range(n)], shuffle=False)


def stage(report: ProfileReport, prefix: str) -> Stage:
    """The one stage of *report* whose name starts with *prefix*."""
    (found,) = [s for s in report.stages if s.name.startswith(prefix)]
    return found
