"""dataflow.to_jax: pytrees of jax.Array placed ahead by a thread; global arrays with a sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dataflow as D

jax = pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batches(n=40, size=8):
    dps = [{"x": np.full(3, i, np.float32), "y": i % 5, "name": f"n{i}"} for i in range(n)]
    return D.BatchData(D.DataFromList(dps, shuffle=False), size)


def test_yields_the_pipelines_datapoints_as_jax_arrays():
    want = batches()
    want.reset_state()
    want = list(want)
    with D.to_jax(batches(), prefetch=3) as it:
        got = list(it)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        assert isinstance(g["x"], jax.Array) and isinstance(g["y"], jax.Array)
        np.testing.assert_array_equal(np.asarray(g["x"]), w["x"])
        np.testing.assert_array_equal(np.asarray(g["y"]), w["y"])
        assert isinstance(g["name"], np.ndarray)  # strings stay numpy: JAX has no type for them


def test_every_iter_is_a_pass_and_a_break_stops_the_thread():
    it = D.to_jax(batches())
    first = [int(b["y"][0]) for b in it]
    for _b in it:
        break  # the fixture fails the test if the reading thread is left behind
    second = [int(b["y"][0]) for b in it]
    assert first == second == [0, 3, 1, 4, 2]
    it.close()


def test_next_without_iter_starts_the_first_pass():
    it = D.to_jax(D.DataFromList([[np.arange(2)]], shuffle=False))
    assert np.asarray(next(it)[0]).tolist() == [0, 1]
    with pytest.raises(StopIteration):
        next(it)


def test_an_error_in_the_pipeline_reaches_the_loop():
    def fail(dp):
        raise OSError("disk gone")

    with D.to_jax(D.MapData(batches(), fail)) as it:
        with pytest.raises(OSError, match="disk gone"):
            next(it)


def test_bad_arguments():
    with pytest.raises(TypeError, match="jax.sharding.Sharding"):
        D.to_jax(batches(), sharding="x")
    with pytest.raises(TypeError, match="must be a DataFlow"):
        D.to_jax([1, 2])
    with pytest.raises(ValueError, match="prefetch"):
        D.to_jax(batches(), prefetch=0)


def test_a_missing_jax_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ImportError, match=r"dataflow-ml\[jax\]"):
        D.to_jax(batches())


def test_several_hosts_each_read_their_own_share(monkeypatch):
    shares = []
    for index in range(2):
        monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        source = D.DataFromList([[np.int64(i)] for i in range(21)], shuffle=True, seed=1)
        with D.to_jax(source) as it:
            shares.append([int(dp[0]) for dp in it])
    assert [len(s) for s in shares] == [10, 10]  # equal counts: one of 21 dropped
    assert not set(shares[0]) & set(shares[1])


def test_a_sharding_lays_each_batch_over_the_devices():
    # Two CPU devices need a fresh process (the flag is read when jax starts).
    script = textwrap.dedent(
        """
        import numpy as np, jax, dataflow as D
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        assert len(jax.devices()) == 2, jax.devices()
        sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
        df = D.BatchData(D.DataFromList([[np.full(3, i, np.float32)] for i in range(16)],
                                        shuffle=False), 4)
        with D.to_jax(df, sharding=sharding) as it:
            out = list(it)
        assert len(out) == 4
        for k, (x,) in enumerate(out):
            assert x.shape == (4, 3) and x.sharding == sharding
            assert len(x.addressable_shards) == 2
            assert x.addressable_shards[0].data.shape == (2, 3)
            np.testing.assert_array_equal(np.asarray(x)[:, 0], np.arange(4 * k, 4 * k + 4))
        print("ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_an_iterator_dropped_without_close_stops_its_thread():
    import gc

    def read_one():
        it = D.to_jax(batches())
        for _ in it:
            break  # neither close() nor a with block

    read_one()
    gc.collect()  # the fixture fails the test if the reading thread is left behind
