"""Tests of dataflow.ray: RayRunner on a local Ray cluster.

One Ray cluster serves the whole module (a module-scoped fixture: set up before,
and torn down after, the function fixture that checks each test leaves no thread
or child process behind; and gone before the next test module runs). The
dataflows below are pickled by value (cloudpickle), since the actors cannot
import this test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import cloudpickle
import numpy as np
import pytest

from dataflow import (
    DataFlow,
    DataFlowTerminated,
    DataFromList,
    MapData,
    check_dataflow,
)
from dataflow.parallel import WorkerDiedError, WorkerError

ray = pytest.importorskip("ray")

from dataflow.ray import RayRunner  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT_S = 60  # every test; a hang fails in this time
pytestmark = [pytest.mark.timeout(TIMEOUT_S), pytest.mark.usefixtures("ray_cluster")]

# Ray's settings for a quick, quiet local cluster that writes nothing into $HOME.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "0",
}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 4 logical CPUs for the tests of this module, shut down after them."""
    old = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    # Ray's socket paths must stay under 108 bytes: a short directory of its own.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        object_store_memory=200 << 20,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def items(n, shuffle=False, seed=None):
    return DataFromList([[i] for i in range(n)], shuffle=shuffle, seed=seed)


def firsts(dps):
    return [dp[0] for dp in dps]


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def actor_pids(df):
    """The pids of *df*'s actors (each answers after the calls queued before)."""
    calls = [slot.actor.hello.remote() for slot in df._workers.slots]
    return [pid for pid, _ in ray.get(calls, timeout=20)]


def assert_ended(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if process_alive(p)], "actor processes outlived close()"


class KillOnce(DataFlow):
    """Yields 0..n-1 of its shard; the first actor to reach *at* kills its own process."""

    def __init__(self, n, at, marker):
        self.n, self.at, self.marker = n, at, marker
        self.inner = DataFromList([[i] for i in range(n)], shuffle=True, seed=5)

    def reset_state(self):
        self.inner.reset_state()

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for dp in self.inner:
            if dp[0] == self.at and not os.path.exists(self.marker):
                with open(self.marker, "w"):
                    pass
                os.kill(os.getpid(), signal.SIGKILL)
            yield dp

    def own_state_dict(self):
        return None

    def load_own_state_dict(self, state):
        pass

    @property
    def parents(self):
        return (self.inner,)


class KillAlways(KillOnce):
    def __iter__(self):
        for dp in self.inner:
            if dp[0] == self.at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield dp


class Forever(DataFlow):
    def __iter__(self):
        while True:
            time.sleep(0.05)
            if False:
                yield


def fail_at_7(dp):
    if dp[0] == 7:
        raise ValueError("bad datapoint 7")
    return dp


def big(dp):
    return [np.full((32, 224, 224, 3), dp[0] % 251, np.uint8), dp[0]]


class TestRayRunner:
    def test_each_datapoint_once_per_pass_two_passes(self):
        with RayRunner(items(500, shuffle=True, seed=1), 2, seed=3) as df:
            df.reset_state()
            assert len(df) == 500
            first, second = firsts(df), firsts(df)
        assert sorted(first) == list(range(500))
        assert sorted(second) == list(range(500))
        assert first != second  # a new partition and order every pass

    def test_contract(self):
        check_dataflow(lambda: RayRunner(items(20), 2, chunk_size=3), resume=False)

    def test_large_arrays_arrive_through_the_object_store(self):
        with RayRunner(MapData(items(6), big), 2) as df:
            df.reset_state()
            got = sorted(df, key=lambda dp: dp[1])
        assert [dp[1] for dp in got] == list(range(6))
        for image, k in got:
            assert image.shape == (32, 224, 224, 3) and image.dtype == np.uint8
            assert (image == k % 251).all()
            assert not image.flags.writeable  # a view of Ray's shared memory, not a copy

    def test_clones(self):
        with RayRunner(items(10, shuffle=True), 2, exactly_once=False, seed=0) as df:
            df.reset_state()
            out = firsts(df)
        assert len(out) == 10 and set(out) <= set(range(10))

    def test_a_lost_clone_is_replaced(self):
        with RayRunner(items(50, shuffle=True), 2, exactly_once=False, chunk_size=4) as df:
            df.reset_state()
            it = iter(df)
            got = [next(it)[0] for _ in range(20)]
            os.kill(actor_pids(df)[0], signal.SIGKILL)
            got += firsts(it)
            # The other clone may serve whole passes before the loss is seen.
            for _ in range(100):
                got += firsts(df)
                if df._workers.slots[0].restarts:
                    break
            assert df._workers.slots[0].restarts == 1
            got += firsts(df)
        assert len(got) % 50 == 0 and set(got) <= set(range(50))

    @pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
    def test_a_worker_lost_mid_pass_loses_and_repeats_nothing(self, how):
        with RayRunner(items(3000, shuffle=True, seed=2), 2, seed=1, chunk_size=16) as df:
            df.reset_state()
            it = iter(df)
            got = [next(it)[0] for _ in range(700)]
            old = actor_pids(df)
            if how == "ray.kill":
                ray.kill(df._workers.slots[0].actor, no_restart=False)
            else:
                os.kill(old[0], signal.SIGKILL)
            got += firsts(it)
            assert sorted(got) == list(range(3000))
            assert df._workers.slots[0].restarts == 1
            assert sorted(firsts(df)) == list(range(3000))  # and the next pass is whole
            new = actor_pids(df)
        assert new[0] != old[0] and new[1] == old[1]
        assert_ended(new)

    def test_a_result_lost_with_its_node_is_made_again(self):
        class LosesOneResult:
            """Ray, except that the 5th result fetched is lost (as with its node)."""

            def __init__(self):
                self.gets = 0

            def get(self, ref, timeout=None):
                self.gets += 1
                if self.gets == 5:
                    raise ray.exceptions.ObjectLostError(ref.hex(), None, "test")
                return ray.get(ref, timeout=timeout)

            def __getattr__(self, name):
                return getattr(ray, name)

        with RayRunner(items(2000, shuffle=True, seed=3), 2, seed=2, chunk_size=32) as df:
            df.reset_state()
            df._workers.ray = LosesOneResult()
            got = firsts(df)
            lost = [slot.lost for slot in df._workers.slots]
        assert sorted(got) == list(range(2000))
        assert sum(len(reasons) for reasons in lost) == 1
        assert "ObjectLostError" in [r for reasons in lost for r in reasons][0]

    def test_a_worker_that_dies_in_its_dataflow_is_replaced_exactly(self, tmp_path):
        ds = KillOnce(400, at=123, marker=str(tmp_path / "killed"))
        with RayRunner(ds, 2, seed=0, chunk_size=8) as df:
            df.reset_state()
            got = firsts(df)
        assert (tmp_path / "killed").exists()
        assert sorted(got) == list(range(400))

    def test_a_worker_that_cannot_be_restarted_raises(self, tmp_path):
        ds = KillAlways(100, at=40, marker=str(tmp_path / "unused"))
        start = time.monotonic()
        with RayRunner(ds, 2, seed=0, max_restarts=1) as df:
            df.reset_state()
            with pytest.raises(WorkerDiedError) as info:
                firsts(df)
        assert time.monotonic() - start < 40
        message = str(info.value)
        assert "RayRunner worker" in message and "max_restarts=1" in message
        assert "was lost 2 time(s)" in message
        assert info.value.worker_index in (0, 1)

    def test_an_actor_that_cannot_be_placed_raises(self):
        df = RayRunner(
            items(10), 1, worker_options={"resources": {"no_such_thing": 1}}, start_timeout=1
        )
        with df:
            df.reset_state()
            with pytest.raises(WorkerDiedError, match=r"did not start within 1 s"):
                firsts(df)

    def test_an_error_in_the_dataflow_reaches_the_consumer(self):
        with RayRunner(MapData(items(20), fail_at_7), 2) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as info:
                firsts(df)
        err = info.value
        assert isinstance(err, ValueError)  # also the original type
        assert err.exc_type == "ValueError" and err.worker_index == 0
        assert "bad datapoint 7" in str(err)
        assert f"(pid {err.pid} on {err.node})" in str(err)
        assert "fail_at_7" in err.remote_traceback
        with pytest.raises(RuntimeError, match="stopped after a worker failed"):
            next(iter(df))

    def test_a_pipeline_the_actors_cannot_unpickle_says_what_to_do(self, tmp_path, monkeypatch):
        # A module only this process can import: its functions are pickled by reference.
        (tmp_path / "only_here_xyz.py").write_text("def same(dp):\n    return dp\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        import only_here_xyz

        try:
            with RayRunner(MapData(items(4), only_here_xyz.same), 1) as df:
                df.reset_state()
                with pytest.raises(ModuleNotFoundError, match="register_pickle_by_value"):
                    firsts(df)
        finally:
            sys.modules.pop("only_here_xyz", None)

    def test_two_ranks_read_disjoint_shares_of_equal_length(self):
        dfs = [
            RayRunner(items(23, shuffle=True), 2, rank=r, world_size=2, seed=7) for r in range(2)
        ]
        passes = []
        for df in dfs:
            with df:
                df.reset_state()
                assert len(df) == 11  # 23 in 4 shards of 5, 6, 6, 6: ranks hold 11 and 12
                passes.append([firsts(df), firsts(df)])
        for p in range(2):
            a, b = passes[0][p], passes[1][p]
            assert len(a) == len(b) == 11
            assert not set(a) & set(b) and len(set(a)) == 11
            assert set(a) | set(b) <= set(range(23))

    def test_resumes_from_its_state_exactly(self):
        def make():
            return RayRunner(items(600, shuffle=True, seed=4), 2, seed=9, chunk_size=10)

        with make() as df:
            df.reset_state()
            first = firsts(df)
            it = iter(df)
            head = [next(it)[0] for _ in range(250)]
            state = df.state_dict()
        with make() as resumed:
            resumed.reset_state()
            resumed.load_state_dict(state)
            tail = firsts(resumed)
            following = firsts(resumed)
        assert sorted(first) == list(range(600))
        assert sorted(head + tail) == list(range(600))
        assert sorted(following) == list(range(600))

    def test_a_worker_lost_in_a_resumed_pass_resumes_from_what_was_received(self):
        def make():
            return RayRunner(items(1200, shuffle=True, seed=6), 2, seed=8, chunk_size=16)

        with make() as df:
            df.reset_state()
            it = iter(df)
            head = [next(it)[0] for _ in range(300)]
            state = df.state_dict()
        with make() as resumed:
            resumed.reset_state()
            resumed.load_state_dict(state)
            it = iter(resumed)
            tail = [next(it)[0] for _ in range(200)]
            os.kill(actor_pids(resumed)[1], signal.SIGKILL)
            tail += firsts(it)
            assert resumed._workers.slots[1].restarts == 1
        assert sorted(head + tail) == list(range(1200))

    def test_stopping_early_then_close_leaves_nothing_running(self):
        df = RayRunner(items(10000), 2, chunk_size=4)
        df.reset_state()
        it = iter(df)
        assert len([next(it) for _ in range(10)]) == 10
        pids = actor_pids(df)
        del it
        df.close()
        df.close()  # twice is harmless
        assert_ended(pids)
        with pytest.raises(RuntimeError, match="was closed"):
            iter(df).__next__()
        assert ray.is_initialized()  # the user's Ray stays up

    def test_close_from_another_thread_ends_the_iteration(self):
        df = RayRunner(Forever(), 1, exactly_once=False)
        df.reset_state()
        threading.Timer(0.5, df.close).start()
        with pytest.raises(DataFlowTerminated):
            next(iter(df))

    def test_a_stuck_worker_raises_timeout_error(self):
        with RayRunner(Forever(), 1, exactly_once=False, timeout=1) as df:
            df.reset_state()
            with pytest.raises(TimeoutError, match="received no datapoint"):
                next(iter(df))

    def test_garbage_collection_kills_the_actors(self):
        df = RayRunner(items(100), 2)
        df.reset_state()
        pids = actor_pids(df)
        del df
        assert_ended(pids)


class TestPassesBrokenOff:
    def test_a_pass_broken_off_costs_no_restart_and_no_wait(self):
        # Calls of a pass broken off are left to run: cancelling queued actor calls
        # would leave a gap in the actor's call order, which Ray reports after 30 s.
        with RayRunner(items(500), 2, seed=1, chunk_size=8, max_restarts=0, timeout=20) as df:
            df.reset_state()
            for _ in range(6):
                it = iter(df)
                for _ in range(37):
                    next(it)
                it.close()
                assert sorted(firsts(df)) == list(range(500))
            assert [slot.restarts for slot in df._workers.slots] == [0, 0]

    def test_close_from_another_thread_ends_the_iteration_cleanly(self):

        df = RayRunner(Forever(), 2, exactly_once=False, chunk_size=4)
        df.reset_state()
        errors = []

        def iterate():
            try:
                for _ in df:
                    pass
            except BaseException as err:  # DataFlowTerminated is a BaseException
                errors.append(err)

        thread = threading.Thread(target=iterate)
        thread.start()
        time.sleep(1.0)
        df.close()
        thread.join(20)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], DataFlowTerminated), errors


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            ({"num_workers": 0}, ValueError, "num_workers must be a positive int, got 0"),
            ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int, got 0"),
            ({"max_inflight": "2"}, TypeError, "max_inflight must be a positive int, got '2'"),
            ({"max_restarts": -1}, ValueError, "max_restarts must be a non-negative int"),
            ({"worker_options": [1]}, TypeError, "worker_options must be a dict"),
            (
                {"worker_options": {"bogus": 1}},
                ValueError,
                "worker_options: Invalid option keyword bogus",
            ),
            (
                {"worker_options": {"max_concurrency": 4}},
                ValueError,
                "worker_options must not set 'max_concurrency' (each actor must run one call",
            ),
            ({"rank": 0}, ValueError, "give both rank and world_size"),
            ({"rank": 2, "world_size": 2}, ValueError, "rank must be an int in"),
            (
                {"world_size": 2, "rank": 0, "exactly_once": False},
                ValueError,
                "needs exactly_once=True",
            ),
            ({"start_timeout": 0}, ValueError, "start_timeout must be None or a positive"),
        ],
    )
    def test_bad_arguments_say_what_is_wrong(self, kwargs, error, message):
        kwargs = {"num_workers": 1, **kwargs}
        with pytest.raises(error, match=message.replace("(", r"\(")):
            RayRunner(items(4), **kwargs)

    def test_rank_and_world_size_default_to_torch_distributed(self, monkeypatch):
        class Distributed:
            is_available = is_initialized = staticmethod(lambda: True)
            get_rank = staticmethod(lambda: 1)
            get_world_size = staticmethod(lambda: 3)

        class Torch:
            distributed = Distributed

        monkeypatch.setitem(sys.modules, "torch", Torch)
        df = RayRunner(items(30), 2)
        assert (df.rank, df.world_size) == (1, 3)
        assert len(df) == 10
        assert "rank=1, world_size=3" in repr(df)
        monkeypatch.delitem(sys.modules, "torch")
        assert (RayRunner(items(30), 2).world_size, RayRunner(items(30), 2).rank) == (1, 0)

    def test_a_dataflow_that_does_not_pickle_is_refused(self):
        ds = items(4)
        ds.lock = threading.Lock()
        df = RayRunner(ds, 1)
        with pytest.raises(TypeError, match="must pickle its dataflow"):
            df.reset_state()

    def test_without_ray_says_how_to_install_it(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "ray", None)
        with pytest.raises(ImportError, match=r"pip install 'dataflow-ml\[ray\]'"):
            RayRunner(items(4), 1)


def run_python(code):
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )


def test_importing_dataflow_does_not_import_ray():
    result = run_python(
        """
        import sys
        import dataflow, dataflow.ray, dataflow.parallel.ray
        assert "ray" not in sys.modules, "ray was imported"
        """
    )
    assert result.returncode == 0, result.stderr


def test_starts_its_own_ray_and_shuts_it_down_at_close():
    # Ray's socket paths must stay under 108 bytes: a short directory of its own.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        result = run_python(
            f"""
        import ray
        from dataflow import DataFromList
        from dataflow.ray import RayRunner
        ray_init = ray.init
        ray.init = lambda **kw: ray_init(num_cpus=2, include_dashboard=False,
                                         _temp_dir={temp_dir!r}, log_to_driver=False)
        df = RayRunner(DataFromList([[i] for i in range(10)], shuffle=False), 2)
        df.reset_state()
        assert ray.is_initialized()
        assert sorted(dp[0] for dp in df) == list(range(10))
        df.close()
        assert not ray.is_initialized()
        print("ok")
        """
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
