"""Tests of dataflow.formats.caffe: CaffeLMDB reads Caffe Datum records."""

from __future__ import annotations

import numpy as np
import pytest
from _formats_common import assert_reads_its_shard

from dataflow import CaffeLMDB, check_dataflow

lmdb = pytest.importorskip("lmdb")


# ---- a tiny encoder of the Datum protobuf ----------------------------------------


def varint(n):
    n &= (1 << 64) - 1  # a negative int32 is sent as its 64-bit two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def datum(
    channels=None,
    height=None,
    width=None,
    data=None,
    label=None,
    float_data=None,
    packed=True,
    encoded=None,
    extra=b"",
):
    out = b""
    for number, value in ((1, channels), (2, height), (3, width)):
        if value is not None:
            out += field(number, 0, varint(value))
    if data is not None:
        out += field(4, 2, varint(len(data)) + data)
    if label is not None:
        out += field(5, 0, varint(label))
    if float_data is not None:
        raw = np.asarray(float_data, "<f4").ravel()
        if packed:
            out += field(6, 2, varint(raw.nbytes) + raw.tobytes())
        else:
            out += b"".join(field(6, 5, x.tobytes()) for x in raw)
    if encoded is not None:
        out += field(7, 0, varint(int(encoded)))
    return out + extra


def raw_datum(chw, label):
    c, h, w = chw.shape
    return datum(c, h, w, data=chw.astype(np.uint8).tobytes(), label=label)


def write_db(path, values, keys=None):
    """A Caffe-style database: a directory with data.mdb and lock.mdb."""
    path.mkdir(exist_ok=True)
    keys = keys or [b"%08d_img%d.jpg" % (i, i) for i in range(len(values))]
    with lmdb.open(str(path)) as env, env.begin(write=True) as txn:
        for key, value in zip(keys, values):
            txn.put(key, value)
    return str(path)


def read_all(path, **kwargs):
    df = CaffeLMDB(path, shuffle=False, **kwargs)
    df.reset_state()
    try:
        return list(df)
    finally:
        df.close()


def chw(seed, shape=(3, 2, 4)):
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


class TestCaffeLMDB:
    def test_raw_records_become_hwc_uint8_images_and_int_labels(self, tmp_path):
        images = [chw(0), chw(1, (1, 3, 2))]
        path = write_db(tmp_path / "db", [raw_datum(images[0], 4), raw_datum(images[1], -5)])
        got = read_all(path)
        for (image, label), expected, expected_label in zip(got, images, [4, -5]):
            assert (
                image.dtype == np.uint8 and image.shape == expected.shape[1:] + expected.shape[:1]
            )
            assert np.array_equal(image, expected.transpose(1, 2, 0))
            assert type(label) is int and label == expected_label
            assert image.flags.c_contiguous and image.flags.writeable

    @pytest.mark.parametrize("packed", [True, False], ids=["packed", "repeated"])
    def test_float_data_becomes_float32_images(self, tmp_path, packed):
        values = np.arange(12, dtype=np.float32).reshape(3, 2, 2) / 7
        record = datum(3, 2, 2, float_data=values, label=1, packed=packed)
        [[image, label]] = read_all(write_db(tmp_path / "db", [record]))
        assert image.dtype == np.float32 and label == 1
        assert np.array_equal(image, values.transpose(1, 2, 0))

    @pytest.mark.parametrize("channels", [3, 1])
    def test_encoded_records_are_decoded_by_opencv(self, tmp_path, channels):
        cv2 = pytest.importorskip("cv2")
        hwc = chw(2, (channels, 5, 6)).transpose(1, 2, 0)
        ok, png = cv2.imencode(".png", hwc)
        assert ok
        record = datum(data=png.tobytes(), label=9, encoded=True)
        [[image, label]] = read_all(write_db(tmp_path / "db", [record]))
        assert image.shape == (5, 6, channels) and label == 9
        assert np.array_equal(image, hwc)

    def test_unknown_fields_are_skipped(self, tmp_path):
        extra = (
            field(8, 0, varint(300))
            + field(9, 2, varint(3) + b"abc")
            + field(10, 1, b"\0" * 8)
            + field(11, 5, b"\0" * 4)
        )
        image = chw(3, (1, 2, 2))
        record = datum(1, 2, 2, data=image.tobytes(), label=2, extra=extra)
        [[got, label]] = read_all(write_db(tmp_path / "db", [record]))
        assert np.array_equal(got[:, :, 0], image[0]) and label == 2

    def test_keeps_the_contract_and_shuffles_with_format_string_keys(self, tmp_path):
        values = [raw_datum(chw(i), i) for i in range(6)]
        path = write_db(tmp_path / "db", values, keys=[b"%08d" % i for i in range(6)])
        sequential = check_dataflow(lambda: CaffeLMDB(path, shuffle=False))
        assert [label for _, label in sequential] == list(range(6))
        shuffled = check_dataflow(lambda: CaffeLMDB(path, keys="{:08d}", seed=4))
        assert sorted(label for _, label in shuffled) == list(range(6))
        assert len(CaffeLMDB(path)) == 6

    @pytest.mark.parametrize(
        ("record", "message"),
        [
            (raw_datum(chw(0), 1)[:-5], "the Datum is truncated"),
            (datum(1, 2, 2, data=b"abc", label=0), "holds 3 data bytes, but its size"),
            (datum(1, 2, 2, float_data=[1.0], label=0), "holds 1 float_data values"),
            (datum(1, 1, 1, data=b"a") + field(12, 3, b""), "field 12 of unsupported wire type 3"),
            (datum(-1, 1, 1, label=0), "negative size -1x1x1"),
            (b"\xff" * 11, "a varint longer than 10 bytes"),
        ],
        ids=["truncated", "short-data", "short-floats", "wire-type", "negative", "varint"],
    )
    def test_a_corrupt_record_is_named_with_the_file(self, tmp_path, record, message):
        path = write_db(tmp_path / "db", [raw_datum(chw(0), 0), record])
        with pytest.raises(ValueError) as info:
            read_all(path)
        text = str(info.value)
        assert text.startswith(f"CaffeLMDB: record b'00000001_img1.jpg' of {path!r} cannot be read")
        assert message in text

    def test_an_undecodable_encoded_image_is_an_error(self, tmp_path):
        pytest.importorskip("cv2")
        path = write_db(tmp_path / "db", [datum(data=b"not a png", label=0, encoded=True)])
        with pytest.raises(ValueError, match="OpenCV cannot decode its encoded image"):
            read_all(path)

    def test_each_worker_reads_only_its_shard(self, tmp_path):
        path = write_db(tmp_path / "db", [raw_datum(chw(i), i) for i in range(8)])
        assert_reads_its_shard(lambda shuffle: CaffeLMDB(path, shuffle, seed=6))
