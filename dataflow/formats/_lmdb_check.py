"""Check the structure of an LMDB data file before the LMDB library walks it.

The LMDB library trusts its file: it reads page numbers, offsets and sizes
from it and follows them, and where it meets a page of the wrong kind it
stops the process with ``abort()`` (an assertion), or reads outside the
file. A damaged page (a disk error, a partial copy, a stray write) can so
kill a reader without a Python error. :func:`check_structure` walks the
tree of the main database in Python first, level by level with numpy, and
raises a ``ValueError`` at the first thing that would mislead the library.

What it checks, from LMDB's documented layout (``mdb.c``) of 64-bit
little-endian files:

* the meta page that LMDB uses (of the two, the one with the larger
  transaction id): its root page and depth;
* every branch and leaf page of the main database: its page number is
  where it is, its kind (branch above, leaf at the bottom, all leaves at
  the meta's depth), its bounds (``lower`` and ``upper``), its number of
  keys (two or more in a branch, one or more in a leaf);
* every node: it lies within its page, with its key (and, on a leaf, its
  value or the number of its first overflow page); a child page or an
  overflow run lies within the file's last page; no node claims duplicate
  keys (that needs a database opened with ``dupsort``);
* the totals: branch, leaf and overflow pages and records, as the meta
  page counts them.

It reads every branch and leaf page once, but no overflow page (large
values live there: their contents are covered by the records' checksums,
and LMDB reads no header of them). Databases whose main table allows
duplicate keys, and files of big-endian machines, are not checked.
"""

from __future__ import annotations

import sys
from typing import Dict

import numpy as np

__all__ = ["check_structure"]

_PAGE_HEADER = 16  # page number (8 bytes), pad, flags, lower, upper (2 bytes each)
_NODE_HEADER = 8  # lo, hi, flags, key size (2 bytes each)
_META_OFFSET = _PAGE_HEADER  # the meta structure follows the page header
_META_BYTES = _META_OFFSET + 136  # up to the end of the meta's transaction id
_MAGIC = 0xBEEFC0DE
_DATA_VERSION = 1
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META, _P_LEAF2, _P_SUBP = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40
_PAGE_KINDS = _P_BRANCH | _P_LEAF | _P_OVERFLOW | _P_META | _P_LEAF2 | _P_SUBP
_F_BIGDATA, _F_DUPDATA = 0x01, 0x04
_MDB_DUPSORT = 0x04
_P_INVALID = (1 << 64) - 1  # the root of an empty tree
_CURSOR_STACK = 32  # the deepest tree LMDB's cursors can walk
_CHUNK_PAGES = 1024  # pages checked at once: bounds the memory the check takes


def _meta(raw: bytes) -> Dict[str, int]:
    """The fields that the check uses of the meta page starting *raw*."""
    u16, u32, u64 = (
        lambda at: int.from_bytes(raw[at : at + 2], "little"),
        lambda at: int.from_bytes(raw[at : at + 4], "little"),
        lambda at: int.from_bytes(raw[at : at + 8], "little"),
    )
    m = _META_OFFSET
    main = m + 24 + 48  # magic, version, address, map size; then the free and main tables
    return {
        "flags": u16(10),
        "magic": u32(m),
        "version": u32(m + 4),
        "psize": u32(m + 24),  # the pad field of the free table holds the page size
        "db_flags": u16(main + 4),
        "depth": u16(main + 6),
        "branch_pages": u64(main + 8),
        "leaf_pages": u64(main + 16),
        "overflow_pages": u64(main + 24),
        "entries": u64(main + 32),
        "root": u64(main + 40),
        "last_pgno": u64(m + 24 + 2 * 48),
        "txnid": u64(m + 24 + 2 * 48 + 8),
    }


def _uint(data: np.ndarray, at: np.ndarray, nbytes: int) -> np.ndarray:
    """The little-endian unsigned ints of *nbytes* bytes at the offsets *at* of *data*."""
    value = np.zeros(len(at), np.uint64)
    for k in range(nbytes):
        value |= data[at + k].astype(np.uint64) << np.uint64(8 * k)
    return value


class _Damage(Exception):
    """What is wrong, in words; check_structure turns it into the ValueError."""


def _first(bad: np.ndarray, pages: np.ndarray, what: str) -> None:
    """Raise :class:`_Damage` naming the first page where *bad* holds."""
    if bad.any():
        raise _Damage(f"page {int(pages[np.argmax(bad)])} {what}")


def check_structure(path: str, user: str, file_size: int) -> None:
    """Raise a ``ValueError`` naming *path* if the tree of its main database is damaged.

    *path* is the data file, of *file_size* bytes, which LMDB has opened
    (so its meta pages carry LMDB's magic number and version). See the
    module notes for what is checked.
    """
    if sys.byteorder != "little":
        return
    try:
        with open(path, "rb") as f:
            meta0 = _meta(f.read(_META_BYTES))
            psize = meta0["psize"]
            if psize < 512 or psize & (psize - 1) or file_size < 2 * psize:
                raise _Damage(f"meta page 0 gives the page size {psize}")
            f.seek(psize)
            meta1 = _meta(f.read(_META_BYTES))
        for i, m in enumerate((meta0, meta1)):
            if not m["flags"] & _P_META or m["magic"] != _MAGIC or m["version"] != _DATA_VERSION:
                raise _Damage(f"meta page {i} is not an LMDB meta page")
        meta = meta1 if meta0["txnid"] < meta1["txnid"] else meta0  # LMDB's choice
        if meta["db_flags"] & _MDB_DUPSORT:
            return
        _check_tree(path, meta, psize, file_size)
    except _Damage as damage:
        problem = str(damage)  # raised below, so that no traceback keeps the file mapped
    else:
        return
    raise ValueError(
        f"{user}: the LMDB database {path!r} is corrupt: {problem} (found by checking its "
        "structure before reading it); write it again or restore it from a copy"
    )


def _check_tree(path: str, meta: Dict[str, int], psize: int, file_size: int) -> None:
    last, root, depth = meta["last_pgno"], meta["root"], meta["depth"]
    if (last + 1) * psize > file_size:
        raise _Damage(f"the meta page says the pages end at byte {(last + 1) * psize}")
    if root == _P_INVALID:
        if meta["entries"] or depth:
            raise _Damage(f"the meta page says the empty tree has {meta['entries']} records")
        return
    if not 2 <= root <= last:
        raise _Damage(f"the meta page names the root page {root}, outside pages 2 to {last}")
    if not 1 <= depth <= _CURSOR_STACK:
        raise _Damage(f"the meta page gives the tree depth {depth}")
    # Unmapped when the last array that uses it goes.
    counts = _walk(np.memmap(path, np.uint8, mode="r"), root, depth, last, psize)
    for name, count in counts.items():
        if count != meta[name]:
            raise _Damage(
                f"the tree holds {count} {name.replace('_', ' ')}, "
                f"but the meta page counts {meta[name]}"
            )


def _walk(data: np.ndarray, root: int, depth: int, last: int, psize: int) -> Dict[str, int]:
    """Check every branch and leaf page, level by level; return their totals."""
    counts = {"branch_pages": 0, "leaf_pages": 0, "overflow_pages": 0, "entries": 0}
    pages = np.array([root], np.int64)
    for level in range(depth):
        if len(np.unique(pages)) != len(pages):
            raise _Damage(f"is a child of two branch nodes (tree level {level + 1})")
        where = f"tree level {level + 1} of {depth}"
        chunks = [pages[i : i + _CHUNK_PAGES] for i in range(0, len(pages), _CHUNK_PAGES)]
        leaf = level == depth - 1
        children = [_check_pages(data, chunk, leaf, where, last, psize, counts) for chunk in chunks]
        if level < depth - 1:
            pages = np.concatenate(children)
    return counts


def _check_pages(
    data: np.ndarray,
    pages: np.ndarray,
    leaf: bool,
    where: str,
    last: int,
    psize: int,
    counts: Dict[str, int],
) -> np.ndarray:
    """Check the *leaf* or branch pages *pages* of one level (*where*), add
    them to *counts*, and return the children of branch pages in order."""
    kind = "leaf" if leaf else "branch"
    base = pages * psize
    _first(
        _uint(data, base, 8) != pages.astype(np.uint64), pages, "holds the number of another page"
    )
    flags = _uint(data, base + 10, 2).astype(np.int64) & _PAGE_KINDS
    _first(
        flags != (_P_LEAF if leaf else _P_BRANCH),
        pages,
        f"should be a {kind} page ({where}) but is not",
    )
    lower = _uint(data, base + 12, 2).astype(np.int64)
    upper = _uint(data, base + 14, 2).astype(np.int64)
    _first(
        (lower < _PAGE_HEADER) | (lower > upper) | (upper > psize) | (lower % 2 == 1),
        pages,
        "has impossible bounds of its free space",
    )
    nkeys = (lower - _PAGE_HEADER) // 2
    _first(nkeys < (1 if leaf else 2), pages, f"is a {kind} page with too few keys")
    # The offsets of all the nodes of these pages, page after page.
    owner = np.repeat(np.arange(len(pages)), nkeys)
    slot = np.arange(len(owner)) - (np.cumsum(nkeys) - nkeys)[owner]
    node_pages = pages[owner]
    offset = _uint(data, base[owner] + _PAGE_HEADER + 2 * slot, 2).astype(np.int64)
    _first(
        (offset < upper[owner]) | (offset % 2 == 1) | (offset + _NODE_HEADER > psize),
        node_pages,
        "points to a node outside its nodes' area",
    )
    node = base[owner] + offset
    lo, hi = _uint(data, node, 2), _uint(data, node + 2, 2)
    node_flags, ksize = _uint(data, node + 4, 2), _uint(data, node + 6, 2).astype(np.int64)
    end = offset + _NODE_HEADER + ksize  # where the key ends
    _first(end > psize, node_pages, "has a node whose key runs past the page")
    if not leaf:
        counts["branch_pages"] += len(pages)
        child = lo | hi << np.uint64(16) | node_flags << np.uint64(32)
        _first(
            (child < 2) | (child > np.uint64(last)),
            node_pages,
            f"points to a child page outside pages 2 to {last}",
        )
        return child.astype(np.int64)
    counts["leaf_pages"] += len(pages)
    counts["entries"] += len(owner)
    _first(
        (node_flags & np.uint64(_F_DUPDATA)) != 0,
        node_pages,
        "has a node with duplicate keys, which this database does not allow",
    )
    size = (lo | hi << np.uint64(16)).astype(np.int64)
    big = (node_flags & np.uint64(_F_BIGDATA)) != 0
    _first(~big & (end + size > psize), node_pages, "has a value that runs past the page")
    _first(big & (end + 8 > psize), node_pages, "has a node that runs past the page")
    first = _uint(data, node[big] + _NODE_HEADER + ksize[big], 8)
    runs = ((_PAGE_HEADER - 1 + size[big]) // psize + 1).astype(np.uint64)
    _first(
        (first < 2) | (first > np.uint64(last)) | (first + runs - np.uint64(1) > last),
        node_pages[big],
        f"has a value on overflow pages outside pages 2 to {last}",
    )
    counts["overflow_pages"] += int(runs.sum())
    return pages[:0]
