"""Tests of the pipeline graph: ``parents``, ``repr`` and :func:`dataflow.describe`,
on every built-in dataflow and on classes of one's own."""

from __future__ import annotations

import functools
import inspect
import os
import pathlib
import queue

import numpy as np
import pytest

import dataflow
import dataflow.formats
import dataflow.image
from dataflow import (
    BatchData,
    ConcatData,
    DataFlow,
    DataFromList,
    JoinData,
    MapData,
    MultiProcessMapDataZMQ,
    MultiProcessRunnerZMQ,
    MultiThreadMapData,
    MultiThreadRunner,
    ProxyDataFlow,
    RNGDataFlow,
    describe,
)
from dataflow._repr import short_repr
from dataflow.base import init_args
from dataflow.graph import PipelineTree, parallel_stages


def double(dp):
    return [2 * x for x in dp]


def decode(key, value):
    return [key, value]


def lmdb_file(tmp_path, src):
    pytest.importorskip("lmdb")
    path = str(tmp_path / "data.lmdb")
    dataflow.LMDBSerializer.save(src, path, progress=False)
    return path


def hdf5_file(tmp_path, src):
    pytest.importorskip("h5py")
    path = str(tmp_path / "data.h5")
    dataflow.HDF5Serializer.save(src, path, ["a", "b"], progress=False)
    return path


def svmlight_file(tmp_path):
    path = tmp_path / "data.svm"
    path.write_text("1 1:0.5 3:2\n0 2:1\n")
    return str(path)


def caffe_file(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    path = str(tmp_path / "caffe.lmdb")
    with lmdb.open(path) as env, env.begin(write=True) as txn:
        txn.put(b"00000000", b"")
    return path


def image_file(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = str(tmp_path / "a.png")
    assert cv2.imwrite(path, np.zeros((4, 4, 3), np.uint8))
    return path


def augmentors():
    from dataflow import imgaug

    return [imgaug.Flip(horiz=True)]


def many_augmentors():
    from dataflow import imgaug

    return [imgaug.Flip(horiz=True), imgaug.Resize((32, 32)), imgaug.CenterCrop(8)]


D = dataflow
I = dataflow.image  # noqa: E741
# (class, build(src, tmp_path), its repr ({path} is the file it reads), which
# of [src, other] are its parents). src is DataFromList(SRC, shuffle=False).
PINNED = [
    # sources
    (
        D.DataFromList,
        lambda s, t: D.DataFromList([[i] for i in range(1000)]),
        "DataFromList(n=1000, shuffle=True)",
        "",
    ),
    (
        D.DataFromList,
        lambda s, t: D.DataFromList([[1]], False, seed=3),
        "DataFromList(n=1, shuffle=False, seed=3)",
        "",
    ),
    (
        D.DataFromGenerator,
        lambda s, t: D.DataFromGenerator(lambda: iter([[1]])),
        "DataFromGenerator(gen=<lambda>)",
        "",
    ),
    (
        D.DataFromGenerator,
        lambda s, t: D.DataFromGenerator(iter([[1]]), size=1),
        "DataFromGenerator(gen=<list_iterator>, size=1)",
        "",
    ),
    (
        D.DataFromIterable,
        lambda s, t: D.DataFromIterable([[1], [2]]),
        "DataFromIterable(iterable=[[1], [2]])",
        "",
    ),
    (
        D.DataFromIterable,
        lambda s, t: D.DataFromIterable(range(10**6)),
        "DataFromIterable(iterable=range(0, 1000000))",
        "",
    ),
    (
        D.DataFromQueue,
        lambda s, t: D.DataFromQueue(queue.Queue()),
        "DataFromQueue(queue=<Queue>)",
        "",
    ),
    (
        D.FakeData,
        lambda s, t: D.FakeData([[28, 28], [1]]),
        "FakeData(shapes=[(28, 28), (1,)], size=1000, random=True, dtype='float32', domain=(0, 1))",
        "",
    ),
    (
        D.FakeData,
        lambda s, t: D.FakeData([[2], []], 10, False, ["uint8", "int32"], (0, 10), seed=1),
        "FakeData(shapes=[(2,), ()], size=10, random=False, dtype=['uint8', 'int32'], "
        "domain=(0, 10), seed=1)",
        "",
    ),
    # transforms
    (D.MapData, lambda s, t: D.MapData(s, double), "MapData(func=double)", "s"),
    (
        D.MapDataComponent,
        lambda s, t: D.MapDataComponent(s, abs),
        "MapDataComponent(func=abs, index=0)",
        "s",
    ),
    (
        D.MapDataComponent,
        lambda s, t: D.MapDataComponent(s, lambda x: x, index="image"),
        "MapDataComponent(func=<lambda>, index='image')",
        "s",
    ),
    (
        D.SelectComponent,
        lambda s, t: D.SelectComponent(s, [1, 0]),
        "SelectComponent(idxs=[1, 0])",
        "s",
    ),
    (D.RepeatedData, lambda s, t: D.RepeatedData(s, -1), "RepeatedData(num=-1)", "s"),
    (D.RepeatedDataPoint, lambda s, t: D.RepeatedDataPoint(s, 3), "RepeatedDataPoint(num=3)", "s"),
    (
        D.FixedSizeData,
        lambda s, t: D.FixedSizeData(s, 10),
        "FixedSizeData(size=10, keep_state=True)",
        "s",
    ),
    (
        D.FixedSizeData,
        lambda s, t: D.FixedSizeData(s, 10, keep_state=False),
        "FixedSizeData(size=10, keep_state=False)",
        "s",
    ),
    # batching
    (
        D.BatchData,
        lambda s, t: D.BatchData(s, 64),
        "BatchData(batch_size=64, remainder=False, use_list=False)",
        "s",
    ),
    (
        D.BatchData,
        lambda s, t: D.BatchData(s, 2, True, [True, False]),
        "BatchData(batch_size=2, remainder=True, use_list=[True, False])",
        "s",
    ),
    (
        D.BatchDataByShape,
        lambda s, t: D.BatchDataByShape(s, 8, idx=0),
        "BatchDataByShape(batch_size=8, idx=0)",
        "s",
    ),
    # combining
    (D.ConcatData, lambda s, t: D.ConcatData([s, t]), "ConcatData()", "st"),
    (D.JoinData, lambda s, t: D.JoinData([s, t], strict=False), "JoinData(strict=False)", "st"),
    (D.RandomChooseData, lambda s, t: D.RandomChooseData([s, t]), "RandomChooseData()", "st"),
    (
        D.RandomChooseData,
        lambda s, t: D.RandomChooseData([(s, 0.3), (t, 0.7)], seed=2),
        "RandomChooseData(probs=[0.3, 0.7], seed=2)",
        "st",
    ),
    (D.RandomMixData, lambda s, t: D.RandomMixData([t, s]), "RandomMixData()", "ts"),
    # buffering
    (
        D.LocallyShuffleData,
        lambda s, t: D.LocallyShuffleData(s, 100),
        "LocallyShuffleData(buffer_size=100, num_reuse=1)",
        "s",
    ),
    (
        D.LocallyShuffleData,
        lambda s, t: D.LocallyShuffleData(s, 100, 2, 50, seed=1),
        "LocallyShuffleData(buffer_size=100, num_reuse=2, seed=1)",
        "s",
    ),
    (D.CacheData, lambda s, t: D.CacheData(s, shuffle=True), "CacheData(shuffle=True)", "s"),
    # debugging
    (
        D.PrintData,
        lambda s, t: D.PrintData(s, name="train"),
        "PrintData(num=1, name='train', max_depth=3, max_list=3)",
        "s",
    ),
    (
        D.TestDataSpeed,
        lambda s, t: D.TestDataSpeed(s, 100),
        "TestDataSpeed(size=100, warmup=0)",
        "s",
    ),
    # parallel
    (
        D.MultiProcessRunnerZMQ,
        lambda s, t: D.MultiProcessRunnerZMQ(s, 4),
        "MultiProcessRunnerZMQ(num_proc=4, hwm=50)",
        "s",
    ),
    (
        D.MultiProcessRunnerZMQ,
        lambda s, t: D.MultiProcessRunnerZMQ(s, 2, 10, exactly_once=True),
        "MultiProcessRunnerZMQ(num_proc=2, hwm=10, exactly_once=True)",
        "s",
    ),
    (
        D.MultiProcessRunner,
        lambda s, t: D.MultiProcessRunner(s, 10, 2),
        "MultiProcessRunner(num_prefetch=10, num_proc=2)",
        "s",
    ),
    (
        D.MultiThreadRunner,
        lambda s, t: D.MultiThreadRunner(lambda: D.DataFromList([[1]]), 4, 2),
        "MultiThreadRunner(get_df=<lambda>, num_prefetch=4, num_thread=2)",
        "",
    ),
    (
        D.MultiThreadMapData,
        lambda s, t: D.MultiThreadMapData(s, 2, double),
        "MultiThreadMapData(num_thread=2, map_func=double)",
        "s",
    ),
    (
        D.MultiProcessMapDataZMQ,
        lambda s, t: D.MultiProcessMapDataZMQ(s, 4, double, strict=True),
        "MultiProcessMapDataZMQ(num_proc=4, map_func=double, strict=True)",
        "s",
    ),
    (
        D.MultiProcessMapAndBatchDataZMQ,
        lambda s, t: D.MultiProcessMapAndBatchDataZMQ(s, 2, double, 8),
        "MultiProcessMapAndBatchDataZMQ(num_proc=2, map_func=double, batch_size=8, buffer_size=32)",
        "s",
    ),
    (
        D.RemoteDataZMQ,
        lambda s, t: D.RemoteDataZMQ("tcp://127.0.0.1:5555"),
        "RemoteDataZMQ('tcp://127.0.0.1:5555', bind=True)",
        "",
    ),
]
# (class, build(src, tmp_path) -> (dataflow, the file it reads), repr with {path}, parents)
PINNED_FILES = [
    (
        D.LMDBData,
        lambda s, t: (lambda p: (D.LMDBData(p), p))(lmdb_file(t, s)),
        "LMDBData(lmdb_path={path}, shuffle=True)",
        "",
    ),
    (
        D.LMDBData,
        lambda s, t: (lambda p: (D.LMDBData(p, False, keys=[b"0"]), p))(lmdb_file(t, s)),
        "LMDBData(lmdb_path={path}, shuffle=False)",
        "",
    ),
    (
        D.LMDBDataDecoder,
        lambda s, t: (lambda p: (D.LMDBDataDecoder(D.LMDBData(p), decode), p))(lmdb_file(t, s)),
        "LMDBDataDecoder(decoder=decode)",
        "*",
    ),
    (
        D.CaffeLMDB,
        lambda s, t: (lambda p: (D.CaffeLMDB(p, shuffle=False), p))(caffe_file(t)),
        "CaffeLMDB(lmdb_path={path}, shuffle=False)",
        "",
    ),
    (
        D.HDF5Data,
        lambda s, t: (lambda p: (D.HDF5Data(p, ["a", "b"]), p))(hdf5_file(t, s)),
        "HDF5Data(filename={path}, data_paths=['a', 'b'], shuffle=True)",
        "",
    ),
    (
        D.SVMLightData,
        lambda s, t: (lambda p: (D.SVMLightData(p), p))(svmlight_file(t)),
        "SVMLightData(filename={path}, shuffle=True, n_features=3)",
        "",
    ),
    (
        D.SVMLightData,
        lambda s, t: (lambda p: (D.SVMLightData(p, False, seed=4, n_features=8), p))(
            svmlight_file(t)
        ),
        "SVMLightData(filename={path}, shuffle=False, seed=4, n_features=8)",
        "",
    ),
    (
        I.ImageFromFile,
        lambda s, t: (lambda p: (I.ImageFromFile([p]), p))(image_file(t)),
        "ImageFromFile(files=<list of 1>, channel=3, shuffle=False)",
        "",
    ),
    (
        I.ImageFromFile,
        lambda s, t: (lambda p: (I.ImageFromFile([p] * 10, 1, 8, True, seed=1), p))(image_file(t)),
        "ImageFromFile(files=<list of 10>, channel=1, resize=(8, 8), shuffle=True, seed=1)",
        "",
    ),
    (
        I.AugmentImageComponent,
        lambda s, t: (I.AugmentImageComponent(s, augmentors()), ""),
        "AugmentImageComponent(augmentors=[Flip(horiz=True)], index=0, copy=True, "
        "catch_exceptions=False)",
        "s",
    ),
    (
        I.AugmentImageComponent,
        lambda s, t: (I.AugmentImageComponent(s, many_augmentors(), 1, False, True), ""),
        "AugmentImageComponent(augmentors=[Flip, Resize, CenterCrop], index=1, copy=False, "
        "catch_exceptions=True)",
        "s",
    ),
    (
        I.AugmentImageComponents,
        lambda s, t: (I.AugmentImageComponents(s, augmentors(), coords_index=[2]), ""),
        "AugmentImageComponents(augmentors=[Flip(horiz=True)], index=(0, 1), coords_index=(2,), "
        "copy=True, catch_exceptions=False)",
        "s",
    ),
    (
        I.AugmentImageCoordinates,
        lambda s, t: (I.AugmentImageCoordinates(s, augmentors()), ""),
        "AugmentImageCoordinates(augmentors=[Flip(horiz=True)], img_index=0, coords_index=1, "
        "copy=True, catch_exceptions=False)",
        "s",
    ),
]
# The abstract bases: their subclasses are tested below (Source, Negate, Coin).
BASES = {DataFlow, ProxyDataFlow, RNGDataFlow, dataflow.RandomAccessDataFlow}


def public_dataflow_classes():
    classes = set()
    for module in (dataflow, dataflow.formats, dataflow.image):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, DataFlow):
                classes.add(obj)
    return classes - BASES


def src():
    return DataFromList([[1, 2], [3, 4]], shuffle=False)


def ids(table):
    return [f"{row[0].__name__}-{k}" for k, row in enumerate(table)]


class Source(DataFlow):
    """A source of one's own, with the documented pattern."""

    def __init__(self, n, *, scale=1.0):
        self.n = n
        self.scale = scale

    def __iter__(self):
        return ([i * self.scale] for i in range(self.n))


class Negate(ProxyDataFlow):
    """A wrapper of one's own without an __init__."""

    def __iter__(self):
        return ([-x for x in dp] for dp in self.ds)


class Clip(ProxyDataFlow):
    """A wrapper of one's own with parameters, one stored privately."""

    def __init__(self, ds, low, high=None, *, inplace=False):
        super().__init__(ds)
        self.low, self.high, self._inplace = low, high, inplace

    def __iter__(self):
        return iter(self.ds)


class Coin(RNGDataFlow):
    def __iter__(self):
        yield [int(self.rng.randint(2))]


class Zip(DataFlow):
    """A combiner of one's own that keeps its inputs elsewhere and says so."""

    def __init__(self, left, right):
        self.left, self.right = left, right

    @property
    def parents(self):
        return (self.left, self.right)

    def __iter__(self):
        return ([a, b] for a, b in zip(self.left, self.right))


class TestPinnedRepr:
    def test_every_public_dataflow_has_a_pinned_repr(self):
        pinned = {row[0] for row in PINNED + PINNED_FILES}
        missing = public_dataflow_classes() - pinned
        assert not missing, f"pin the repr of {sorted(c.__name__ for c in missing)} in PINNED"

    @pytest.mark.parametrize("cls, build, expected, parents", PINNED, ids=ids(PINNED))
    def test_builtin(self, tmp_path, cls, build, expected, parents):
        s, t = src(), DataFromList([[5, 6]], shuffle=False)
        df = build(s, t)
        assert isinstance(df, cls)
        assert repr(df) == expected
        assert df.parents == tuple({"s": s, "t": t}[c] for c in parents)

    @pytest.mark.parametrize("cls, build, expected, parents", PINNED_FILES, ids=ids(PINNED_FILES))
    def test_builtin_reading_a_file(self, tmp_path, cls, build, expected, parents):
        s = src()
        df, path = build(s, tmp_path)
        assert isinstance(df, cls)
        assert repr(df) == expected.format(path=short_repr(path))
        if parents == "*":
            assert len(df.parents) == 1 and isinstance(df.parents[0], dataflow.LMDBData)
        else:
            assert df.parents == tuple({"s": s}[c] for c in parents)


class TestParents:
    def test_a_source_has_none(self):
        assert src().parents == ()
        assert Source(3).parents == () and Coin().parents == ()

    def test_a_wrapper_has_its_ds(self):
        s = src()
        assert Negate(s).parents == (s,)
        assert BatchData(MapData(s, double), 1).parents[0].parents == (s,)

    def test_a_combiner_has_its_dataflows_in_order(self):
        a, b = src(), src()
        assert ConcatData([b, a]).parents == (b, a)
        assert JoinData([a, a]).parents == (a, a)

    def test_a_subclass_may_override_it(self):
        a, b = src(), src()
        assert Zip(a, b).parents == (a, b)

    def test_a_subclass_may_assign_it(self):
        class Tagged(ProxyDataFlow):
            def __init__(self, ds, extra):
                super().__init__(ds)
                self.parents = (ds, extra)

        a, b = src(), src()
        assert Tagged(a, b).parents == (a, b)

    def test_is_read_without_building_or_resetting_anything(self):
        calls = []

        def get_df():
            calls.append(1)
            return src()

        runner = MultiThreadRunner(get_df, 2, 2)
        assert runner.parents == ()
        assert str(describe(runner)).startswith("MultiThreadRunner(get_df=get_df, ")
        assert calls == []

    def test_is_a_descriptor_on_the_class(self):
        assert DataFlow.parents.__doc__.startswith("The ``parents`` attribute")


class TestRepr:
    def test_a_source_of_ones_own_shows_its_stored_parameters(self):
        assert repr(Source(3)) == "Source(n=3)"
        assert repr(Source(3, scale=0.5)) == "Source(n=3, scale=0.5)"

    def test_a_wrapper_of_ones_own_without_init_shows_no_parameters(self):
        assert repr(Negate(src())) == "Negate()"
        assert repr(Coin()) == "Coin()"

    def test_a_private_attribute_counts_unless_the_default_is_none(self):
        assert repr(Clip(src(), 0)) == "Clip(low=0)"
        assert repr(Clip(src(), 0, 1, inplace=True)) == "Clip(low=0, high=1, inplace=True)"

    def test_values_are_summarized(self):
        arr = np.zeros((100, 3), np.uint8)
        assert repr(MapData(src(), functools.partial(double))) == "MapData(func=partial(double))"
        assert repr(Source(arr)) == "Source(n=<ndarray (100, 3) uint8>)"
        assert repr(Source(list(range(100)))) == "Source(n=<list of 100>)"
        assert (
            repr(Source(pathlib.Path("a") / "b.lmdb"))
            == f"Source(n={os.path.join('a', 'b.lmdb')!r})"
        )

    def test_a_class_with_its_own_repr_keeps_it(self):
        class Named(Source):
            def __repr__(self):
                return "Named!"

        assert repr(Named(1)) == "Named!" and str(describe(Named(1))) == "Named!"

    def test_never_raises(self):
        class Broken(Source):
            def _repr_args(self):
                raise ValueError("no")

        assert repr(Broken(1)).startswith("<test_graph.") and " object at 0x" in repr(Broken(1))

    def test_a_half_built_dataflow_shows_what_it_has(self):
        df = Source.__new__(Source)
        assert repr(df) == "Source()"

    def test_is_cheap_for_a_long_list(self):
        df = DataFromList([[i] for i in range(10**6)], shuffle=False)
        assert repr(df) == "DataFromList(n=1000000, shuffle=False)"


class TestInitArgs:
    def test_leaves_out_inputs_none_and_options_at_their_default(self):
        assert init_args(Clip(src(), 0)) == {"low": 0}

    def test_given_values_win(self):
        assert init_args(Clip(src(), 0), low=5, high=6) == {"low": 5, "high": 6}

    def test_keeps_a_positional_parameter_at_its_default(self):
        assert init_args(BatchData(src(), 2)) == {
            "batch_size": 2,
            "remainder": False,
            "use_list": False,
        }

    def test_leaves_out_what_is_not_stored(self):
        class Lossy(ProxyDataFlow):
            def __init__(self, ds, factor):
                super().__init__(ds)

        assert init_args(Lossy(src(), 2)) == {}


class TestShortRepr:
    @pytest.mark.parametrize(
        "value, expected",
        [
            (None, "None"),
            (3, "3"),
            (np.float32(0.5), "0.5"),
            ("x" * 10, repr("x" * 10)),
            ("/a/" + "b" * 60 + ".lmdb", repr("..." + "b" * 40 + ".lmdb")),
            (b"abc", "b'abc'"),
            (b"a" * 100, "<bytes of 100>"),
            ([], "[]"),
            ((1,), "(1,)"),
            ({"a": 1}, "{'a': 1}"),
            ([[[1]]], "[[<list of 1>]]"),
            (list(range(7)), "<list of 7>"),
            (["x" * 30, "y" * 30], "<list of 2>"),
            (np.dtype("float32"), "'float32'"),
            (int, "int"),
            (double, "double"),
            (queue.Queue(), "<Queue>"),
        ],
    )
    def test_renders(self, value, expected):
        assert short_repr(value) == expected

    def test_an_object_with_a_long_or_failing_repr_is_its_type(self):
        class Long:
            def __repr__(self):
                return "L" * 100

        class Failing:
            def __repr__(self):
                raise RuntimeError

        assert short_repr(Long()) == "<Long>" and short_repr(Failing()) == "<Failing>"


def pipeline():
    """A pipeline with a runner over a mapper's input, as in the docs."""
    df = DataFromList([[i] for i in range(1000)], shuffle=True)
    df = MultiProcessRunnerZMQ(MapData(df, double), num_proc=4)
    return BatchData(df, 64)


class TestDescribe:
    def test_draws_the_pipeline_outermost_first(self):
        assert str(describe(pipeline())) == (
            "BatchData(batch_size=64, remainder=False, use_list=False)\n"
            "  MultiProcessRunnerZMQ(num_proc=4, hwm=50)  [consumer]\n"
            "    in each of 4 worker processes:\n"
            "      MapData(func=double)\n"
            "        DataFromList(n=1000, shuffle=True)"
        )

    def test_a_mapper_says_only_its_function_runs_in_the_workers(self):
        df = MultiProcessMapDataZMQ(src(), 2, double)
        df = MultiThreadMapData(df, 1, double)
        assert describe(df).lines == (
            "MultiThreadMapData(num_thread=1, map_func=double)"
            "  [consumer; map_func runs in 1 worker thread]",
            "  MultiProcessMapDataZMQ(num_proc=2, map_func=double)"
            "  [consumer; map_func runs in 2 worker processes]",
            "    DataFromList(n=2, shuffle=False)",
        )

    def test_a_thread_runner_shows_get_df_until_it_built_a_dataflow(self):
        df = MultiThreadRunner(src, 2, 3)
        assert describe(df).lines == (
            "MultiThreadRunner(get_df=src, num_prefetch=2, num_thread=3)"
            "  [consumer; get_df() runs in each of 3 worker threads]",
        )

    def test_runners_nest(self):
        inner = MultiProcessRunnerZMQ(src(), 1)
        assert describe(dataflow.MultiProcessRunner(inner, 2, 2)).lines == (
            "MultiProcessRunner(num_prefetch=2, num_proc=2)  [consumer]",
            "  in each of 2 worker processes:",
            "    MultiProcessRunnerZMQ(num_proc=1, hwm=50)  [consumer]",
            "      in 1 worker process:",
            "        DataFromList(n=2, shuffle=False)",
        )

    def test_a_shared_dataflow_is_drawn_once(self):
        shared = src()
        df = JoinData([MapData(shared, double), MapData(shared, abs), src()])
        assert str(describe(df)) == (
            "JoinData()\n"
            "  MapData(func=double)\n"
            "    DataFromList(n=2, shuffle=False)  [#1]\n"
            "  MapData(func=abs)\n"
            "    DataFromList(n=2, shuffle=False)  [#1, see above]\n"
            "  DataFromList(n=2, shuffle=False)"
        )

    def test_a_shared_subtree_is_not_drawn_again(self):
        shared = MapData(src(), double)
        assert describe(ConcatData([shared, shared])).lines == (
            "ConcatData()",
            "  MapData(func=double)  [#1]",
            "    DataFromList(n=2, shuffle=False)",
            "  MapData(func=double)  [#1, see above]",
        )

    def test_stops_at_max_depth(self):
        df = src()
        for _ in range(5):
            df = Negate(df)
        assert describe(df, max_depth=1).lines == (
            "Negate()",
            "  Negate()",
            "    ... (deeper than max_depth=1)",
        )
        assert describe(df, max_depth=0).lines == ("Negate()", "  ... (deeper than max_depth=0)")
        assert len(describe(df, max_depth=5).lines) == 6

    def test_an_endless_graph_ends_at_max_depth(self):
        class Endless(DataFlow):
            @property
            def parents(self):
                return (Endless(),)

            def __iter__(self):
                return iter(())

        assert len(describe(Endless(), max_depth=50).lines) == 52

    def test_a_deep_pipeline_does_not_recurse(self):
        df = src()
        for _ in range(5000):
            df = Negate(df)
        assert len(describe(df, max_depth=10**6).lines) == 5001

    def test_a_failing_parents_is_shown(self):
        class Failing(Source):
            @property
            def parents(self):
                raise ValueError("no")

        assert str(describe(Failing(1))) == "Failing(n=1)  [parents raised ValueError]"

    def test_works_on_a_running_pipeline_and_changes_nothing(self):
        df = MultiThreadMapData(src(), 2, double, strict=True)
        df.reset_state()
        try:
            assert str(describe(df)).endswith("  DataFromList(n=2, shuffle=False)")
            assert sorted(dp[0] for dp in df) == [2, 6]
        finally:
            df.close()

    def test_user_subclasses(self):
        df = Clip(Zip(Negate(src()), Source(2)), 0)
        assert str(describe(df)) == (
            "Clip(low=0)\n"
            "  Zip()\n"
            "    Negate()\n"
            "      DataFromList(n=2, shuffle=False)\n"
            "    Source(n=2)"
        )

    def test_refuses_what_is_not_a_dataflow(self):
        with pytest.raises(TypeError, match=r"^df must be a DataFlow, got list$"):
            describe([[1]])
        with pytest.raises(ValueError, match=r"^max_depth must be a non-negative int, got -1$"):
            describe(src(), max_depth=-1)


class TestPipelineTree:
    def test_str_and_repr_are_the_tree(self):
        df = MapData(src(), double)
        tree = describe(df)
        assert isinstance(tree, PipelineTree)
        assert tree.root is df
        assert tree.lines == ("MapData(func=double)", "  DataFromList(n=2, shuffle=False)")
        assert str(tree) == repr(tree) == "\n".join(tree.lines)


def test_a_ray_runner_draws_its_inputs_in_its_workers():
    pytest.importorskip("ray")
    from dataflow.ray import RayRunner

    text = str(describe(RayRunner(BatchData(DataFromList([[1]] * 4), 2), 2)))
    assert "in each of 2 worker processes" in text
    assert parallel_stages(RayRunner(DataFromList([[1]]), 3))[0][1:] == ("process", True, 3)
