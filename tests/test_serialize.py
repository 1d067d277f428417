"""Tests of dataflow.serialize: the msgpack and pickle serializers."""

from __future__ import annotations

import collections
import enum
import math
import pickle
import threading

import msgpack
import msgpack_numpy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataflow import _arrays
from dataflow.serialize import MsgpackSerializer, PickleSerializer, Serializer, dumps, loads

DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]
SHAPES = [(), (0,), (5,), (2, 3), (2, 0, 4), (1, 2, 1, 3)]


def sample(dtype, shape, seed=0):
    values = np.random.RandomState(seed).uniform(-100, 100, size=shape)
    if np.dtype(dtype).kind == "c":
        values = values * (1 + 1j)
    elif np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return np.asarray(values).astype(dtype)


def assert_same(got, expected, where="top"):
    """*got* equals *expected* as the msgpack serializer promises: same types
    (tuples as lists), arrays with the same dtype, shape and values."""
    if isinstance(expected, (list, tuple)):
        assert type(got) is list, f"{where}: {type(got).__name__}"
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert type(got) is dict and list(got) == list(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (np.ndarray, np.generic)):  # the same bits, NaN included
        assert type(got) is type(expected), f"{where}: {type(got).__name__}"
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        assert got.tobytes() == expected.tobytes(), where
    else:
        assert type(got) is type(expected), f"{where}: {type(got).__name__}"
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got), where
        else:
            assert got == expected, where


# ---- Hypothesis strategies -----------------------------------------------------

numeric_dtypes = st.sampled_from([np.dtype(d) for d in DTYPES]).map(lambda d: d.newbyteorder("="))
arrays = hnp.arrays(
    numeric_dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
)
non_contiguous = arrays.filter(lambda a: a.ndim >= 1).map(lambda a: a[::-1].T)
numpy_scalars = hnp.from_dtype(np.dtype("int32")) | numeric_dtypes.flatmap(
    lambda d: hnp.arrays(d, ()).map(lambda a: a[()])
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | numpy_scalars
    | arrays
    | non_contiguous
)
nested = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


class TestMsgpackSerializer:
    @settings(max_examples=300, deadline=None)
    @given(nested)
    def test_round_trip_keeps_structure_types_dtypes_and_shapes(self, obj):
        s = MsgpackSerializer()
        assert_same(s.loads(s.dumps(obj)), obj)

    @settings(max_examples=100, deadline=None)
    @given(nested)
    def test_read_only_mode_gives_the_same_values(self, obj):
        s = MsgpackSerializer(writable=False)
        assert_same(s.loads(s.dumps(obj)), obj)

    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    @pytest.mark.parametrize("shape", SHAPES, ids=str)
    def test_round_trip_of_every_dtype_and_shape(self, dtype, shape):
        array = sample(dtype, shape)
        s = MsgpackSerializer()
        assert_same(s.loads(s.dumps([array, {"a": array}])), [array, {"a": array}])

    @pytest.mark.parametrize(
        "array",
        [
            np.arange(24).reshape(4, 6)[:, ::2],
            np.arange(24).reshape(4, 6).T,
            np.asfortranarray(np.ones((3, 2), np.float32)),
            np.arange(10, dtype=">i4"),
            np.array(["ab", "c"]),
            np.array([b"x", b"yz"]),
            np.array(["2020-01-02", "1999-12-31"], dtype="datetime64[D]")[::-1],
            np.arange(4, dtype="timedelta64[s]"),
            np.zeros((0, 3), np.float16),
        ],
        ids=[
            "strided",
            "transposed",
            "fortran",
            "big-endian",
            "str",
            "bytes",
            "datetime",
            "timedelta",
            "empty",
        ],
    )
    def test_round_trip_of_other_layouts_and_dtypes(self, array):
        got = loads(dumps(array))
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array) and got.flags.c_contiguous

    def test_arrays_are_writable_copies_by_default(self):
        got = loads(dumps([np.zeros(3), np.zeros((2, 2), np.uint8)]))
        for array in got:
            array += 1
        assert got[0].tolist() == [1, 1, 1]

    def test_arrays_are_read_only_views_when_writable_is_false(self):
        got = MsgpackSerializer(writable=False).loads(dumps([np.zeros(3)]))[0]
        with pytest.raises(ValueError, match="read-only"):
            got += 1

    def test_numpy_scalars_keep_their_type(self):
        values = [np.float64(1.5), np.float32(2.5), np.int8(-3), np.uint64(2**64 - 1)]
        values += [np.bool_(True), np.complex64(1j), np.str_("s"), np.bytes_(b"b")]
        for got, expected in zip(loads(dumps(values)), values):
            assert type(got) is type(expected) and got == expected

    def test_tuples_and_subclasses_come_back_as_their_base_types(self):
        class Color(enum.IntEnum):
            RED = 1

        obj = [(1, (2,)), collections.OrderedDict(a=1), Color.RED, bytearray(b"x"), 1 + 2j]
        got = loads(dumps(obj))
        assert got == [[1, [2]], {"a": 1}, 1, b"x", 1 + 2j]
        assert [type(x) for x in got] == [list, dict, int, bytes, np.complex128]

    @pytest.mark.parametrize("writable", [True, False])
    def test_tuple_dict_keys_come_back_as_tuples(self, writable):
        # A tuple key is stored as a list, which cannot be a dict key when decoded.
        obj = [{(1, (2, "a")): np.arange(2), "x": [{(3,): 1 + 2j}]}, (4, 5)]
        s = MsgpackSerializer(writable=writable)
        got = s.loads(s.dumps(obj))
        assert list(got[0]) == [(1, (2, "a")), "x"] and got[1] == [4, 5]
        assert got[0][(1, (2, "a"))].tolist() == [0, 1]
        assert got[0]["x"] == [{(3,): 1 + 2j}]
        assert got[0][(1, (2, "a"))].flags.writeable is writable

    def test_a_buffer_that_is_not_bytes_is_still_a_type_error(self):
        with pytest.raises(TypeError):
            loads(None)

    def test_unserializable_value_is_named_with_its_place(self):
        with pytest.raises(TypeError) as info:
            dumps([1, {"meta": collections.deque()}])
        message = str(info.value)
        assert message.startswith(
            "MsgpackSerializer cannot serialize a value of type 'collections.deque' at "
            "component 1, key 'meta': msgpack stores None, bool"
        )
        assert "PickleSerializer" in message

    def test_an_int_beyond_64_bits_is_named_with_what_to_do(self):
        with pytest.raises(TypeError) as info:
            dumps([1, 2**70])
        message = str(info.value)
        assert message.startswith(
            "MsgpackSerializer cannot serialize a value of type 'int' at component 1: "
        )
        assert "stores ints from -2**63 to 2**64 - 1; send a larger one as a str" in message

    def test_places_name_nested_indices_and_dict_keys(self):
        with pytest.raises(TypeError, match=r"at component 'x', index 2\b"):
            dumps({"x": [1, 2, object()]})
        with pytest.raises(TypeError, match="frozenset' at component 0, a dict key"):
            dumps([{frozenset(): 1}])
        with pytest.raises(TypeError, match="'object' at the top level"):
            dumps(object())

    def test_array_subclasses_come_back_as_plain_arrays_but_masks_are_refused(self):
        class Tagged(np.ndarray):
            pass

        got = loads(dumps([np.arange(3).view(Tagged), memoryview(b"ab")]))
        assert type(got[0]) is np.ndarray and got[0].tolist() == [0, 1, 2] and got[1] == b"ab"
        with pytest.raises(TypeError, match="a masked array would lose its mask"):
            dumps([np.ma.masked_array([1, 2], mask=[0, 1])])

    def test_object_arrays_are_refused_with_a_clear_message(self):
        with pytest.raises(TypeError) as info:
            dumps([np.zeros(2), np.array([None, 1], dtype=object)])
        assert str(info.value).startswith(
            "MsgpackSerializer cannot serialize a numpy array of dtype object at component 1: "
            "object arrays hold arbitrary Python objects"
        )

    def test_structured_arrays_are_refused(self):
        array = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
        with pytest.raises(TypeError, match="structured numpy dtypes such as"):
            dumps([array])

    def test_integers_beyond_64_bits_are_refused_with_their_place(self):
        with pytest.raises(TypeError, match="type 'int' at component 0, index 1"):
            dumps([[0, 2**64]])

    def test_reads_msgpack_numpy_format(self):
        structured = np.zeros(2, dtype=[("a", "<i4", (2,)), ("b", "<f8")])
        structured["a"] = [[1, 2], [3, 4]]
        values = [
            np.arange(6, dtype=">f4").reshape(2, 3),
            np.zeros((0, 2), np.int16),
            np.float32(1.5),
            np.int64(-7),
            2 + 3j,
            structured,
            {"x": np.uint8(9)},
        ]
        buf = msgpack.packb(values, default=msgpack_numpy.encode, use_bin_type=True)
        got = loads(buf)
        for g, e in zip(got[:5], values[:5]):
            assert type(g) is type(e) and np.array_equal(g, e)
            assert getattr(g, "dtype", None) == getattr(e, "dtype", None)
        assert got[5].dtype == structured.dtype and got[5].tobytes() == structured.tobytes()
        assert got[6] == {"x": np.uint8(9)} and type(got[6]["x"]) is np.uint8
        got[0][0, 0] = 5  # writable

    def test_dicts_that_only_share_a_key_with_msgpack_numpy_stay_dicts(self):
        obj = [
            {b"nd": 1},
            {b"complex": 1, b"x": 2},
            {b"nd": True, b"type": "<i4", b"data": 3, b"z": 0},
        ]
        assert loads(dumps(obj)) == obj

    def test_msgpack_numpy_object_arrays_are_not_unpickled(self):
        buf = msgpack.packb(np.array([None], dtype=object), default=msgpack_numpy.encode)
        with pytest.raises(ValueError, match="stores with pickle; it is not loaded"):
            loads(buf)

    def test_msgpack_numpy_patch_changes_nothing(self, monkeypatch):
        for name in ("Packer", "Unpacker", "packb", "unpackb", "pack", "unpack", "dumps", "loads"):
            monkeypatch.setattr(msgpack, name, getattr(msgpack, name))  # restored afterwards
        before = dumps([np.arange(3), 1])
        msgpack_numpy.patch()
        assert dumps([np.arange(3), 1]) == before
        assert loads(before)[0].tolist() == [0, 1, 2]

    @pytest.mark.parametrize(
        ("buf", "match"),
        [
            (b"\x92\x01", "incomplete input"),  # a list of 2 with 1 item
            (dumps([np.arange(4)])[:-3], "incomplete input"),  # truncated array data
            (msgpack.packb(msgpack.ExtType(1, b"")), "truncated header"),
            (msgpack.packb(msgpack.ExtType(1, bytes([1, 5, 0, 0, 0, 0, 0, 0]))), "for 5 dims"),
            (msgpack.packb(msgpack.ExtType(1, bytes([1, 0]) + b"zz\0\0\0\0")), "bad dtype"),
            (msgpack.packb(msgpack.ExtType(1, bytes([1, 0]) + b"|O\0\0\0\0")), "dtype object"),
        ],
        ids=["truncated-list", "truncated-array", "empty", "short", "dtype", "object"],
    )
    def test_corrupt_data_raises_value_error(self, buf, match):
        with pytest.raises(ValueError, match=match):
            loads(buf)

    def test_array_with_wrong_data_size_is_refused(self):
        payload = _arrays._array_payload(np.arange(4, dtype=np.int16))[:-2]
        bad = msgpack.packb(msgpack.ExtType(1, payload))
        with pytest.raises(ValueError, match="6 bytes of data, but shape .4,. and dtype int16"):
            loads(bad)

    def test_a_known_header_with_the_wrong_data_size_is_still_refused(self):
        good = np.arange(4, dtype=np.int16)
        assert loads(dumps([good]))[0].tolist() == [0, 1, 2, 3]  # caches its header
        for cut in (2, len(_arrays._array_payload(good)) - 1):
            bad = msgpack.packb(msgpack.ExtType(1, _arrays._array_payload(good)[:-cut]))
            with pytest.raises(ValueError, match="corrupt numpy array in msgpack data"):
                loads(bad)

    @pytest.mark.parametrize("layout", ["contiguous", "strided", "fortran"])
    def test_arrays_larger_than_the_small_array_size_round_trip(self, layout):
        n = _arrays._SMALL_ARRAY_BYTES // 4 + 3
        array = {
            "contiguous": np.arange(n, dtype=np.int32),
            "strided": np.arange(2 * n, dtype=np.int32)[::2],
            "fortran": np.asfortranarray(np.arange(2 * n, dtype=np.int32).reshape(2, n)),
        }[layout]
        assert array.nbytes > _arrays._SMALL_ARRAY_BYTES
        got = loads(dumps([array]))[0]
        assert got.dtype == array.dtype and np.array_equal(got, array)
        got += 1  # writable

    def test_unknown_extension_types_come_back_as_ext_type(self):
        buf = msgpack.packb([msgpack.ExtType(42, b"xyz")])
        assert loads(buf) == [msgpack.ExtType(42, b"xyz")]

    def test_many_array_shapes_do_not_grow_the_header_caches_forever(self):
        for n in range(_arrays._MAX_CACHED_HEADERS + 10):
            assert loads(dumps(np.zeros(n, np.uint8))).shape == (n,)
        assert len(_arrays.ENCODE_HEADERS) <= _arrays._MAX_CACHED_HEADERS
        assert len(_arrays.DECODE_HEADERS) <= _arrays._MAX_CACHED_HEADERS

    def test_large_outputs_round_trip_and_release_the_packer(self):
        big = np.arange(_arrays._MAX_KEPT_PACKER_BYTES // 4, dtype=np.float64)
        assert np.array_equal(loads(dumps([big])), [big])
        assert not hasattr(_arrays._PACKERS, "packer")
        assert loads(dumps([1])) == [1]

    def test_an_error_leaves_the_packer_usable(self):
        with pytest.raises(TypeError):
            dumps([np.arange(3), object()])
        assert loads(dumps([np.arange(3), 4]))[1] == 4

    def test_threads_serialize_concurrently(self):
        results = {}

        def work(k):
            arrays = [np.full((k + 1, 3), k, np.int32) for _ in range(200)]
            results[k] = all(np.array_equal(loads(dumps([a]))[0], a) for a in arrays)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == {k: True for k in range(4)}

    def test_is_picklable_for_spawned_workers(self):
        s = pickle.loads(pickle.dumps(MsgpackSerializer(writable=False)))
        assert s.writable is False and not s.loads(s.dumps([np.zeros(1)]))[0].flags.writeable
        assert repr(s) == "MsgpackSerializer(writable=False)"

    def test_name_identifies_the_codec(self):
        assert MsgpackSerializer.name == "msgpack"


class TestPickleSerializer:
    def test_round_trip_keeps_tuples_and_python_objects(self):
        s = PickleSerializer()
        obj = [np.arange(3), (1, 2), collections.deque([1]), {"a": np.float32(2)}]
        got = s.loads(s.dumps(obj))
        assert type(got[1]) is tuple and got[2] == collections.deque([1])
        assert np.array_equal(got[0], obj[0]) and got[0].flags.writeable

    def test_unpicklable_value_is_named_with_its_place(self):
        expected = "PickleSerializer cannot serialize a value of type '_thread.lock' at component 1"
        with pytest.raises(TypeError, match=expected + ", key 'lock'"):
            PickleSerializer().dumps([0, {"lock": threading.Lock()}])

    def test_name_identifies_the_codec(self):
        assert (
            PickleSerializer.name == "pickle" and repr(PickleSerializer()) == "PickleSerializer()"
        )


class TestSerializer:
    def test_is_abstract(self):
        with pytest.raises(TypeError):
            Serializer()

    def test_a_subclass_plugs_in_another_codec(self):
        class Repr(Serializer):
            name = "repr"

            def dumps(self, obj):
                return repr(obj).encode()

            def loads(self, buf):
                return eval(bytes(buf).decode())

        assert Repr().loads(Repr().dumps([1, "a"])) == [1, "a"]


class TestDumps:
    def test_uses_msgpack_with_the_numpy_extension(self):
        buf = dumps([np.zeros(2, np.uint8)])
        assert isinstance(buf, bytes)
        assert isinstance(msgpack.unpackb(buf)[0], msgpack.ExtType)


class TestLoads:
    def test_reverses_dumps_with_writable_arrays(self):
        got = loads(dumps({"x": np.ones((2, 2)), "y": [None, True, "s", b"b", 1.5]}))
        assert got["y"] == [None, True, "s", b"b", 1.5] and got["x"].flags.writeable
