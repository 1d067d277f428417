"""Caffe LMDB: read the ``Datum`` records of a Caffe LMDB database.

The ``Datum`` protobuf is decoded by hand, so neither Caffe nor protobuf is
needed. Its fields: ``channels`` (1), ``height`` (2), ``width`` (3),
``data`` (4, the pixels as CHW uint8 bytes, or an encoded image),
``label`` (5), ``float_data`` (6, CHW float32, packed or not) and
``encoded`` (7, true when ``data`` is a JPEG/PNG file).
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from .._optional import import_optional
from .lmdb import LMDBData

__all__ = ["CaffeLMDB"]

# protobuf wire types
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_CHANNELS, _HEIGHT, _WIDTH, _DATA, _LABEL, _FLOAT_DATA, _ENCODED = range(1, 8)


def _varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    """The varint at *pos* of *buf* and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("the Datum is truncated (in a varint)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("the Datum holds a varint longer than 10 bytes")


def _int32(value: int) -> int:
    """A varint-encoded int32 (negative ones are 64-bit two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_datum(value: bytes) -> Tuple[List[int], memoryview, List[memoryview], int, bool]:
    """``[channels, height, width]``, data, float_data chunks, label and encoded."""
    buf = memoryview(value)
    dims = [0, 0, 0]
    data = buf[:0]
    floats: List[memoryview] = []
    label, encoded = 0, False
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            number, pos = _varint(buf, pos)
            if _CHANNELS <= field <= _WIDTH:
                dims[field - _CHANNELS] = _int32(number)
            elif field == _LABEL:
                label = _int32(number)
            elif field == _ENCODED:
                encoded = bool(number)
            continue
        if wire == _BYTES:
            length, pos = _varint(buf, pos)
        elif wire in (_FIXED32, _FIXED64):
            length = 4 if wire == _FIXED32 else 8
        else:
            raise ValueError(f"the Datum holds field {field} of unsupported wire type {wire}")
        if pos + length > len(buf):
            raise ValueError(f"the Datum is truncated (in field {field})")
        chunk = buf[pos : pos + length]
        pos += length
        if field == _DATA and wire == _BYTES:
            data = chunk
        elif field == _FLOAT_DATA and wire in (_BYTES, _FIXED32):
            floats.append(chunk)
    return dims, data, floats, label, encoded


def _decode_encoded(data: memoryview) -> np.ndarray:
    cv2 = import_optional("cv2", "CaffeLMDB (for encoded images)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"OpenCV cannot decode its encoded image ({len(data)} bytes)")
    return image if image.ndim == 3 else image[:, :, np.newaxis]


def _decode_datum(value: bytes) -> List[Any]:
    """``[image, label]`` from the bytes of a Datum; the image is HWC."""
    dims, data, floats, label, encoded = _parse_datum(value)
    if encoded:
        return [_decode_encoded(data), label]
    channels, height, width = dims
    if min(dims) < 0:
        raise ValueError(f"the Datum has a negative size {channels}x{height}x{width}")
    if floats and not len(data):
        pixels = np.frombuffer(b"".join(floats), "<f4").astype(np.float32, copy=False)
        what = "float_data values"
    else:
        pixels = np.frombuffer(data, np.uint8)
        what = "data bytes"
    if pixels.size != channels * height * width:
        raise ValueError(
            f"the Datum holds {pixels.size} {what}, but its size channels x height x width = "
            f"{channels}x{height}x{width} needs {channels * height * width}"
        )
    image = pixels.reshape(channels, height, width).transpose(1, 2, 0)
    return [np.array(image, order="C"), label]  # a writable copy


class CaffeLMDB(LMDBData):
    """Yield ``[image, label]`` from a Caffe LMDB database of ``Datum`` records.

    The image is an HWC array (height, width, channels), writable and
    C-contiguous: uint8 from the raw ``data`` bytes, float32 from
    ``float_data``, or, for an encoded record, the JPEG/PNG decoded by
    OpenCV (``cv2.imdecode`` with ``IMREAD_UNCHANGED``: BGR channel order,
    a grayscale image as HxWx1). The label is an ``int``. Order, shuffling,
    keys and ``len()`` (exact) are those of :class:`LMDBData`; so is
    sharding: inside a runner with ``exactly_once=True``, each worker reads
    only its shard. A record that is not a valid Datum raises a
    ``ValueError`` naming the file and the key.

    Args:
        lmdb_path: the database: a directory holding ``data.mdb``, or the
            data file itself.
        shuffle: visit the records in a new random order every pass.
        keys: ``None`` (all records), a list of keys, or a format string
            such as ``'{:08d}'``; see :class:`LMDBData`.
        seed: seed of the shuffle; ``None`` (the default) draws fresh
            entropy at every ``reset_state()``.

    Example:
        >>> import lmdb, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> # channels=1, height=1, width=2, data=[7, 9], label=3 (field tag, value ...)
        >>> datum = bytes([0x08, 1, 0x10, 1, 0x18, 2, 0x22, 2, 7, 9, 0x28, 3])
        >>> with lmdb.open(tmp.name) as env, env.begin(write=True) as txn:
        ...     txn.put(b"00000000", datum)
        True
        >>> df = CaffeLMDB(tmp.name, shuffle=False)
        >>> df.reset_state()
        >>> [[image.shape, image.ravel().tolist(), label] for image, label in df]
        [[(1, 2, 1), [7, 9], 3]]
        >>> df.close(); tmp.cleanup()

    Note:
        Caffe's raw records store decoded pixels, so such a database is
        several times larger than its JPEG images; reading is limited by
        the disk more than by decoding.
    """

    _user = "CaffeLMDB"

    def _datapoint(self, key: bytes, value: bytes) -> List[Any]:
        return _decode_datum(value)
