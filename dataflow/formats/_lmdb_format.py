"""The on-disk layout of the LMDB databases of :class:`LMDBSerializer`: keys,
metadata records and checksums, read and written.

* the data key of datapoint *i* is ``b"%08d" % i``; below
  :data:`SORTED_KEY_LIMIT` records these sort in the order of *i*;
* a data value is the serialized datapoint followed by :data:`CRC_BYTES`
  bytes: the CRC-32 of the key and the serialized datapoint, little-endian
  (version 2; version 1 and tensorpack's databases have none);
* :data:`KEYS` holds the msgpack list of every data key (as tensorpack
  stores it) and :data:`META` the msgpack map that :func:`metadata_records`
  makes and :func:`read_meta` checks;
* :func:`shard_of_records` finds a worker's shard of the data records by
  their keys.

See the module notes of :mod:`dataflow.formats.lmdb` for the whole layout.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from ..serialize import MsgpackSerializer, PickleSerializer, Serializer

KEYS = b"__keys__"
META = b"__dataflow__"
RESERVED = (KEYS, META)
FORMAT = "dataflow.LMDBSerializer"
VERSION = 2  # 1: no checksums; 2: every data value ends with its checksum
CHECKSUM = "crc32"  # the value of "checksum" in the metadata of version 2
CRC_BYTES = 4
# The CRC-32 of any bytes followed by their own CRC-32 in little-endian order:
# a record is intact when crc32(value, crc32(key)) equals it.
CRC_RESIDUE = 0x2144DF1C
SERIALIZERS: Dict[str, Callable[[], Serializer]] = {
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}
SORTED_KEY_LIMIT = 10**8  # keys b"%08d" % i sort in the order of i below this
METADATA = MsgpackSerializer()  # reads and writes __keys__ and __dataflow__


def is_pickle(value: bytes) -> bool:
    """Whether *value* is a pickle (protocol 2 or later) rather than msgpack.

    Pickles start with the PROTO opcode ``0x80``; in msgpack ``0x80`` is the
    empty map, which is the whole value.
    """
    return len(value) > 1 and value[0] == 0x80


def data_file(path: str) -> Tuple[str, bool]:
    """The data file of the database at *path* and whether *path* is a directory."""
    if os.path.isdir(path):
        return os.path.join(path, "data.mdb"), True
    return path, False


def read_meta(txn: Any, size: int, path: str, user: str) -> Optional[Dict[str, Any]]:
    """The metadata that LMDBSerializer.save wrote, checked; ``None`` if there is none.

    Its ``"checksum"`` is ``"crc32"`` when the values end with checksums
    (version 2), else ``None`` (version 1).
    """
    raw = txn.get(META)
    if raw is None:
        return None
    try:
        meta = METADATA.loads(raw)
    except (TypeError, ValueError):
        meta = None
    if not (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and isinstance(meta.get("serializer"), str)
        and type(meta.get("size")) is int
    ):
        raise ValueError(
            f"{user}: the {META!r} record of {path!r} is not what LMDBSerializer.save writes; "
            "the database is corrupt"
        )
    version = meta.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise ValueError(
            f"{user}: {path!r} has format version {version!r}, but this version of "
            f"dataflow reads versions 1 to {VERSION}"
        )
    if version == 1:
        meta["checksum"] = None
    elif meta.get("checksum") != CHECKSUM:
        raise ValueError(
            f"{user}: the {META!r} record of {path!r} names the checksum "
            f"{meta.get('checksum')!r}, not {CHECKSUM!r}; the database is corrupt"
        )
    if meta["size"] != size:
        raise ValueError(
            f"{user}: {path!r} holds {size} datapoints, but it was written with {meta['size']}; "
            "the database is corrupt"
        )
    return meta


def metadata_records(size: int, serializer_name: str) -> List[Tuple[bytes, bytes]]:
    """The :data:`KEYS` and :data:`META` records of a database of *size* datapoints
    written with the serializer named *serializer_name*."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "serializer": serializer_name,
        "size": size,
        "checksum": CHECKSUM,
    }
    keys = [b"%08d" % i for i in range(size)]
    return [(KEYS, METADATA.dumps(keys)), (META, METADATA.dumps(meta))]


def shard_of_records(
    cursor: Any, reserved: FrozenSet[bytes], shard: range, numbered: bool
) -> Iterator[Tuple[Any, Any]]:
    """The ``(key, value)`` pairs of the data records whose positions in key
    order are in *shard*, a contiguous range; no other value is read, nor
    any record after the shard.

    With *numbered* (the data keys are ``b"%08d" % i`` in key order, as
    LMDBSerializer.save writes them below :data:`SORTED_KEY_LIMIT` records)
    the cursor goes straight to the first key of the shard, and each key
    read must be the one expected there; a missing or unexpected one is
    yielded as ``(expected key, None)``, which the reader reports as a
    missing record. Otherwise the cursor steps over the keys before the
    shard (counting data records only: *reserved* keys are skipped).
    """
    start, stop = shard.start, shard.stop
    if start >= stop:
        return
    if numbered:
        found = cursor.set_key(b"%08d" % start)
        for i in range(start, stop):
            if i > start:
                found = cursor.next()
            expected, key = b"%08d" % i, cursor.key() if found else None
            if key != expected:
                yield expected, None
                return
            yield key, cursor.value()
        return
    position = 0
    for key in cursor.iternext(values=False):
        if key in reserved:
            continue
        if position >= start:
            yield key, cursor.value()
            if position + 1 == stop:
                return
        position += 1


def first_value(txn: Any, reserved: FrozenSet[bytes]) -> Optional[bytes]:
    """The value of the first data record in key order, or ``None`` if there is none."""
    for key, value in txn.cursor():
        if key not in reserved:
            return value
    return None


def check_keys(keys: Any) -> Any:
    """*keys* as ``None``, a format string, or a list of bytes."""
    if keys is None:
        return None
    if isinstance(keys, str):
        try:
            keys.format(0)
        except (IndexError, KeyError, ValueError):
            valid = False
        else:
            valid = "{" in keys
        if not valid:
            raise ValueError(
                f"keys must be a format string of one index such as '{{:08d}}' when it is a "
                f"str, got {keys!r}"
            )
        return keys
    if not isinstance(keys, (list, tuple)):
        raise TypeError(
            f"keys must be None, a format string or a list of bytes or str keys, got {keys!r}"
        )
    for i, key in enumerate(keys):
        if not isinstance(key, (bytes, str)):
            raise TypeError(f"keys must hold bytes or str keys, got {key!r} at index {i}")
    return [key.encode() if isinstance(key, str) else key for key in keys]


def records_after(
    cursor: Any, reserved: FrozenSet[bytes], after: bytes, count: int
) -> Iterator[Tuple[Any, Any]]:
    """The ``(key, value)`` pairs of the (at most *count*) data records whose
    keys follow the key *after* in key order: the cursor goes straight there."""
    if count <= 0 or not cursor.set_range(after):
        return
    if cursor.key() == after and not cursor.next():
        return
    for key, value in cursor.iternext():
        if key in reserved:
            continue
        yield key, value
        count -= 1
        if not count:
            return


def records_at(
    txn: Any,
    keys: Optional[List[bytes]],
    indices: Sequence[int],
    size: int,
    reserved: FrozenSet[bytes],
    numbered: bool,
    after: Optional[bytes],
) -> Tuple[Iterator[Tuple[Any, Any]], FrozenSet[bytes]]:
    """The ``(key, value)`` pairs of the data records at the positions *indices*
    (in the list *keys*, or without it in key order, of *size* data records),
    and the keys among them to skip. In key order, *indices* is a ``range``;
    *after*, the key of the record before it, lets the cursor go straight
    there when the keys are not *numbered*."""
    if keys is not None:
        if isinstance(indices, range) and indices.step == 1:
            keys = keys[indices.start : indices.stop]
        else:
            keys = [keys[i] for i in indices]
        return zip(keys, map(txn.get, keys)), frozenset()
    assert isinstance(indices, range), "in key order, the positions are consecutive"
    if len(indices) == size:  # all records, in key order
        return txn.cursor().iternext(), reserved
    if after is not None and not numbered:
        return records_after(txn.cursor(), reserved, after, len(indices)), frozenset()
    return shard_of_records(txn.cursor(), reserved, indices, numbered), frozenset()


def key_of_hex(text: Any, user: str) -> Optional[bytes]:
    """The key whose hex text is *text* (``None`` for ``None``), as saved in a state."""
    if text is None:
        return None
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"load_state_dict() of {user}: 'after' must be the hex text of a key, got {text!r}"
        ) from None
