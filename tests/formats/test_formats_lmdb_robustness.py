"""Tests of dataflow.formats.lmdb against damage and killed writers: the
structure check before LMDB walks a file, and the clean-up of temporary
files that killed saves leave behind."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _formats_common import Yields, files_in
from _lmdb_damage import damaged_outcomes

from dataflow import DataFromList, LMDBData, LMDBSerializer
from dataflow.formats import _files, _lmdb_env

lmdb = pytest.importorskip("lmdb")

PAGE = 4096
P_BRANCH, P_LEAF, F_BIGDATA = 0x01, 0x02, 0x01
_WAIT_S = 20.0  # the longest wait for a writer subprocess to get somewhere


def save(path, datapoints, **kwargs):
    kwargs.setdefault("progress", False)
    LMDBSerializer.save(Yields(datapoints), str(path), **kwargs)
    return str(path)


def load_all(path, shuffle=False):
    df = LMDBSerializer.load(path, shuffle=shuffle)
    df.reset_state()
    try:
        return list(df)
    finally:
        df.close()


def database(tmp_path, name="db"):
    """A database of two tree levels, with values on leaf and on overflow pages."""
    rng = np.random.RandomState(0)
    sizes = [5000 if i % 40 == 0 else int(rng.randint(20, 200)) for i in range(800)]
    return save(
        tmp_path / name, [[i, np.full(size, i % 256, np.uint8)] for i, size in enumerate(sizes)]
    )


def u16(raw, at):
    return struct.unpack_from("<H", raw, at)[0]


def pages_of_kind(raw, kind):
    """The numbers of the pages whose header says they are *kind* (and where they are)."""
    return [
        p
        for p in range(2, len(raw) // PAGE)
        if struct.unpack_from("<Q", raw, p * PAGE)[0] == p and u16(raw, p * PAGE + 10) == kind
    ]


def node_offsets(raw, page):
    """Where the nodes of the branch or leaf *page* start, in the file."""
    base = page * PAGE
    return [base + u16(raw, base + 16 + 2 * i) for i in range((u16(raw, base + 12) - 16) // 2)]


def last_page(path):
    with lmdb.open(path, subdir=False, readonly=True, lock=False) as env:
        return env.info()["last_pgno"]


def damaged_copy(tmp_path, raw, changes, name="damaged"):
    """A copy of the data file *raw* with the bytes at each offset of *changes* replaced."""
    damaged = bytearray(raw)
    for at, data in changes.items():
        damaged[at : at + len(data)] = data
    copy = str(tmp_path / name)
    with open(copy, "wb") as f:
        f.write(damaged)
    return copy


def structure_error(path, problem):
    return (
        f"LMDBSerializer.load: the LMDB database {path!r} is corrupt: {problem} (found by "
        "checking its structure before reading it); write it again or restore it from a copy"
    )


def _writer_script(target, hold):
    """A script that saves 50 datapoints to *target* and, with *hold*, waits
    for a line on stdin after the first 10 before it goes on."""
    return textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from dataflow import DataFlow, LMDBSerializer

        class Source(DataFlow):
            def __iter__(self):
                for i in range(50):
                    if i == 10 and {hold!r}:
                        print("writing", flush=True)
                        sys.stdin.readline()
                    yield [i, np.zeros(100, np.uint8)]

        LMDBSerializer.save(Source(), {target!r}, write_frequency=5, progress=False)
        """
    )


def start_writer(target, hold=True):
    """A subprocess in the middle of saving to *target* (it has its
    temporary file), waiting for a line on stdin to finish."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _writer_script(str(target), hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "writing\n"
    return proc


def temporary_files(directory):
    return [name for name in files_in(directory) if name.endswith(".tmp")]


class TestLMDBSerializer:
    # ---- the structure check -----------------------------------------------------------
    def test_a_zeroed_leaf_page_is_refused_when_loading(self, tmp_path):
        path = database(tmp_path)
        with open(path, "rb") as f:
            raw = f.read()
        page = pages_of_kind(raw, P_LEAF)[3]
        copy = damaged_copy(tmp_path, raw, {page * PAGE: bytes(PAGE)})
        with pytest.raises(ValueError) as info:
            LMDBSerializer.load(copy)
        assert str(info.value) == structure_error(
            copy, f"page {page} holds the number of another page"
        )

    def test_damage_that_would_mislead_lmdb_is_named(self, tmp_path):
        path = database(tmp_path)
        last = last_page(path)
        with open(path, "rb") as f:
            raw = f.read()
        (root,) = pages_of_kind(raw, P_BRANCH)
        leaf = pages_of_kind(raw, P_LEAF)[0]
        child = node_offsets(raw, root)[1]
        big = next(
            at
            for page in pages_of_kind(raw, P_LEAF)
            for at in node_offsets(raw, page)
            if u16(raw, at + 4) & F_BIGDATA
        )
        big_page = big // PAGE
        cases = [
            (
                {child: struct.pack("<HH", (last + 5) & 0xFFFF, (last + 5) >> 16)},
                f"page {root} points to a child page outside pages 2 to {last}",
            ),
            (
                {leaf * PAGE + 10: struct.pack("<H", P_BRANCH)},
                f"page {leaf} should be a leaf page (tree level 2 of 2) but is not",
            ),
            (
                {leaf * PAGE + 12: struct.pack("<H", PAGE)},
                f"page {leaf} has impossible bounds of its free space",
            ),
            (
                {root * PAGE + 12: struct.pack("<H", 18)},
                f"page {root} is a branch page with too few keys",
            ),
            (
                {big + 8 + u16(raw, big + 6): struct.pack("<Q", last)},
                f"page {big_page} has a value on overflow pages outside pages 2 to {last}",
            ),
            (
                {leaf * PAGE + 16: struct.pack("<H", PAGE - 4)},
                f"page {leaf} points to a node outside its nodes' area",
            ),
        ]
        for i, (changes, problem) in enumerate(cases):
            copy = damaged_copy(tmp_path, raw, changes, f"damaged {i}")
            with pytest.raises(ValueError) as info:
                LMDBSerializer.load(copy)
            assert str(info.value) == structure_error(copy, problem)

    def test_meta_page_counts_must_match_the_tree(self, tmp_path):
        path = database(tmp_path)
        with open(path, "rb") as f:
            raw = f.read()
        entries_at = PAGE + 16 + 24 + 48 + 32  # meta page 1 (the newer), main table, entries
        entries = struct.unpack_from("<Q", raw, entries_at)[0]
        copy = damaged_copy(tmp_path, raw, {entries_at: struct.pack("<Q", entries + 1)})
        with pytest.raises(ValueError) as info:
            LMDBSerializer.load(copy)
        assert str(info.value) == structure_error(
            copy, f"the tree holds {entries} entries, but the meta page counts {entries + 1}"
        )

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("fill", ["zeros", "random"])
    def test_damaged_pages_are_errors_never_a_dead_process(self, tmp_path, fill):
        # Each damaged copy is read in a forked child, so an abort kills the child only.
        outcomes = damaged_outcomes(str(tmp_path), 50, seed=1, fill=fill)
        assert [outcome for _, outcome in outcomes if outcome not in ("ok", "error")] == []
        assert sum(outcome == "error" for _, outcome in outcomes) >= 45

    def test_a_database_is_checked_once_per_process_while_unchanged(self, tmp_path, monkeypatch):
        path = database(tmp_path)
        checked = []
        check = _lmdb_env.check_structure
        monkeypatch.setattr(
            _lmdb_env, "check_structure", lambda *args: checked.append(args[0]) or check(*args)
        )
        for _ in range(2):
            assert len(load_all(path)) == 800
        assert checked == [path]
        save(path, [[1]], overwrite=True)
        assert load_all(path) == [[1]]
        assert checked == [path, path]

    # ---- temporary files of killed writers ---------------------------------------------
    @pytest.mark.timeout(60)
    def test_the_next_save_removes_what_a_killed_save_left_behind(self, tmp_path, caplog):
        writer = start_writer(tmp_path / "first.lmdb")
        try:
            (leftover,) = temporary_files(tmp_path)
            size = os.path.getsize(tmp_path / leftover)
        finally:
            writer.kill()
            writer.wait(_WAIT_S)
            writer.stdin.close()
            writer.stdout.close()
        assert temporary_files(tmp_path) == [leftover] and size > 0
        with caplog.at_level(logging.WARNING, logger="dataflow.formats._files"):
            save(tmp_path / "second.lmdb", [[1]])
        assert files_in(tmp_path) == ["second.lmdb"]
        assert caplog.messages == [
            f"removed {tmp_path / leftover} ({size} bytes), the temporary file of a write of "
            f"first.lmdb that process {writer.pid} began and never finished (the process died)"
        ]

    @pytest.mark.timeout(60)
    def test_concurrent_saves_keep_each_others_temporary_files(self, tmp_path, caplog):
        writer = start_writer(tmp_path / "first.lmdb")
        try:
            with caplog.at_level(logging.WARNING, logger="dataflow.formats._files"):
                save(tmp_path / "second.lmdb", [[1]])
                save(tmp_path / "first.lmdb", [[2]])  # the same target: a rename replaces it
            assert len(temporary_files(tmp_path)) == 1
            writer.stdin.write("go on\n")
            writer.stdin.flush()
            assert writer.wait(_WAIT_S) == 0
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait(_WAIT_S)
            writer.stdin.close()
            writer.stdout.close()
        assert caplog.messages == []
        assert files_in(tmp_path) == ["first.lmdb", "second.lmdb"]
        assert len(load_all(str(tmp_path / "first.lmdb"))) == 50  # the last rename wins

    def test_only_files_of_dead_writers_on_this_machine_are_removed(self, tmp_path):
        host, pid = _files._host_tag(), os.getpid()
        start = _files._start_time(pid)
        other_host = f"{(int(host, 16) + 1) % (1 << 32):08x}"
        names = {
            # this process, as it is: alive
            f".a.lmdb.{host}-{pid}-{start}-00000000.tmp": True,
            # another machine: it cannot be told, so it stays
            f".b.lmdb.{other_host}-{pid}-{start + 1}-00000000.tmp": True,
            # not a temporary file of a writer
            f".c.lmdb.{host}-{pid}-{start + 1}.tmp": True,
            "d.tmp": True,
            # this pid, but a process that started at another time: the pid was reused
            f".e.lmdb.{host}-{pid}-{start + 1}-00000000.tmp": False,
        }
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        save(tmp_path / "db", [[1]])
        assert files_in(tmp_path) == sorted(["db", *(name for name, kept in names.items() if kept)])

    def test_numpy_and_hdf5_saves_remove_leftovers_too(self, tmp_path):
        host, pid = _files._host_tag(), os.getpid()
        leftover = tmp_path / f".x.npz.{host}-{pid}-{_files._start_time(pid) + 1}-00000000.tmp"
        leftover.write_bytes(b"x")
        from dataflow import NumpySerializer

        NumpySerializer.save(DataFromList([[1]], shuffle=False), str(tmp_path / "x.npz"))
        assert files_in(tmp_path) == ["x.npz"]


class TestLMDBData:
    def test_databases_that_lmdb_wrote_in_other_ways_pass_the_check(self, tmp_path):
        path = str(tmp_path / "other.lmdb")
        rng = np.random.RandomState(0)
        with lmdb.open(path, subdir=False, map_size=1 << 26, max_dbs=2, lock=False) as env:
            named = env.open_db(b"named", dupsort=True)
            for round_ in range(4):  # rewritten many times: pages are freed and reused
                with env.begin(write=True) as txn:
                    for i in rng.permutation(2000)[:1500]:
                        size = 3000 if i % 97 == 0 else int(rng.randint(1, 300))
                        txn.put(b"k%05d" % i, bytes([round_]) * size)
                    for i in rng.permutation(2000)[:400]:
                        txn.delete(b"k%05d" % i)
                    txn.put(b"dup", b"a", db=named)
                    txn.put(b"dup", b"b", db=named)
            with env.begin() as txn:
                expected = [[bytes(k), bytes(v)] for k, v in txn.cursor()]
        df = LMDBData(path, shuffle=False)
        df.reset_state()
        assert list(df) == expected
        df.close()

    def test_an_empty_database_passes_the_check(self, tmp_path):
        path = str(tmp_path / "empty.lmdb")
        with lmdb.open(path, subdir=False, lock=False):
            pass
        df = LMDBData(path, shuffle=False)
        df.reset_state()
        assert list(df) == []
        df.close()

    def test_a_zeroed_branch_page_is_refused(self, tmp_path):
        path = database(tmp_path)
        with open(path, "rb") as f:
            raw = f.read()
        (root,) = pages_of_kind(raw, P_BRANCH)
        copy = damaged_copy(tmp_path, raw, {root * PAGE: bytes(PAGE)})
        with pytest.raises(ValueError) as info:
            LMDBData(copy)
        assert str(info.value) == structure_error(
            copy, f"page {root} holds the number of another page"
        ).replace("LMDBSerializer.load", "LMDBData")
