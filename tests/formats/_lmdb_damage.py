"""Zero one page of an LMDB database and read it in a forked child: does the
reader raise, or does the process die?

Used by the stress test in ``test_formats_lmdb_damage.py``; run it directly to
measure on more files::

    python tests/formats/_lmdb_damage.py --files 200 --seed 0

Each damaged copy is read in a fresh forked child (so an abort in the C
library kills the child only), by three readers: one sequential pass, one
shuffled pass, and the second of three exactly-once shards (which jumps into
the file with a cursor). The outcome of a copy is ``"ok"`` (every reader
finished), ``"error"`` (a Python exception) or ``"signal <name>"`` (a
reader killed the child).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

from dataflow import LMDBSerializer
from dataflow._worker_state import worker_context
from dataflow.base import DataFlow
from dataflow.formats import _lmdb_env
from dataflow.worker import WorkerInfo

PAGE_BYTES = 4096
_CHILD_TIMEOUT_S = 20.0


class _Records(DataFlow):
    """Datapoints of varied sizes: small ones on leaf pages, large ones on
    overflow pages, enough of them for a tree of three levels."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        rng = np.random.RandomState(0)
        for i in range(self.n):
            size = 5000 if i % 50 == 0 else int(rng.randint(20, 300))
            yield [i, rng.randint(0, 256, size=size).astype(np.uint8)]


def write_database(path: str, n: int = 12000) -> str:
    """Write a database of *n* datapoints with LMDBSerializer.save; return *path*."""
    LMDBSerializer.save(_Records(n), path, progress=False)
    return path


def damage_page(source: str, target: str, page: int, fill: bytes = bytes(PAGE_BYTES)) -> None:
    """Copy *source* to *target* with page *page* overwritten by *fill*
    (zeros by default)."""
    with open(source, "rb") as f:
        raw = bytearray(f.read())
    raw[page * PAGE_BYTES : (page + 1) * PAGE_BYTES] = fill
    with open(target, "wb") as f:
        f.write(raw)


def _read_everything(path: str) -> None:
    """Read *path* as the three readers do; raise what they raise."""
    for shuffle in (False, True):
        df = LMDBSerializer.load(path, shuffle=shuffle)
        df.reset_state()
        try:
            for _ in df:
                pass
        finally:
            df.close()
    df = LMDBSerializer.load(path, shuffle=False)
    with worker_context(WorkerInfo(1, 3, None, True)):
        df.reset_state()
        try:
            for _ in df:
                pass
        finally:
            df.close()


def read_in_child(path: str, check: bool = True) -> str:
    """``"ok"``, ``"error"`` or ``"signal <name>"``: how reading *path* ended
    in a forked child; without *check*, as before the structure check existed."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 0
        try:
            os.close(2)  # LMDB's assertion message would clutter the output
            if not check:
                _lmdb_env.check_structure = lambda *args: None
            _read_everything(path)
        except Exception:
            code = 3
        except BaseException:
            code = 4
        os._exit(code)
    deadline = time.monotonic() + _CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.WEXITSTATUS(status)
    return {0: "ok", 3: "error"}.get(code, f"exit {code}")


def damaged_outcomes(
    directory: str, files: int, seed: int, fill: str = "zeros", check: bool = True
) -> List[Tuple[int, str]]:
    """Write one database in *directory*, then for *files* random pages
    (never a meta page, which LMDB itself checks) read a copy with that page
    overwritten by zeros (or with *fill* ``"random"``, random bytes):
    ``(page, outcome)`` for each."""
    source = write_database(os.path.join(directory, "source.lmdb"))
    pages = os.path.getsize(source) // PAGE_BYTES
    rng = random.Random(seed)
    copy = os.path.join(directory, "damaged.lmdb")
    outcomes = []
    for _ in range(files):
        page = rng.randrange(2, pages)
        noise = bytes(rng.getrandbits(8) for _ in range(PAGE_BYTES))
        damage_page(source, copy, page, noise if fill == "random" else bytes(PAGE_BYTES))
        outcomes.append((page, read_in_child(copy, check)))
        os.remove(copy)
    os.remove(source)
    return outcomes


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50, help="damaged copies to read")
    parser.add_argument("--seed", type=int, default=0, help="seed of the page choice")
    parser.add_argument("--fill", choices=["zeros", "random"], default="zeros")
    parser.add_argument(
        "--no-check", action="store_true", help="skip the structure check, as before it existed"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        outcomes = damaged_outcomes(directory, args.files, args.seed, args.fill, not args.no_check)
    counts: Dict[str, int] = collections.Counter(outcome for _, outcome in outcomes)
    for outcome, count in sorted(counts.items()):
        pages = sorted(page for page, o in outcomes if o == outcome)
        shown = ", ".join(map(str, pages[:12])) + (" ..." if len(pages) > 12 else "")
        print(f"{outcome:>16}: {count:4d} of {len(outcomes)}  (pages {shown})")


if __name__ == "__main__":
    main(sys.argv[1:])
