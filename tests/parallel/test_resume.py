"""Exactly-once runners save and resume their position: each worker's part of the pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import dataflow as D
from dataflow._state import ResumeNotSupportedError
from dataflow.parallel import _loops
from dataflow.testing import check_resume

N = 120


def source(seed=1):
    df = D.DataFromList([[i] for i in range(N)], shuffle=True, seed=seed)
    return D.BatchData(D.LocallyShuffleData(df, 16, seed=2), 3)


def zmq_runner(num_proc=2):
    return D.MultiProcessRunnerZMQ(source(), num_proc, exactly_once=True, seed=5)


def queue_runner(num_proc=2):
    return D.MultiProcessRunner(source(), 4, num_proc, exactly_once=True, seed=5)


def thread_runner(num_proc=2):
    return D.MultiThreadRunner(
        lambda: source(), num_prefetch=4, num_thread=num_proc, exactly_once=True, seed=5
    )


RUNNERS = [zmq_runner, queue_runner, thread_runner]


def batches(df, it=None, limit=None):
    out = []
    for dp in df if it is None else it:
        out.append(tuple(dp[0].tolist()))
        if limit is not None and len(out) == limit:
            break
    return out


@pytest.mark.parametrize("make", RUNNERS, ids=lambda f: f.__name__)
def test_one_worker_resumes_bit_identical(make):
    check_resume(lambda: make(num_proc=1))


@pytest.mark.parametrize("make", RUNNERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("passes_before", [0, 1])
@pytest.mark.parametrize("stop", [0, 1, 20, 39, 40])
def test_two_workers_resume_each_datapoint_exactly_once(make, passes_before, stop):
    with make() as df:
        df.reset_state()
        uninterrupted = [batches(df) for _ in range(passes_before + 2)]
    with make() as df:
        df.reset_state()
        for _ in range(passes_before):
            batches(df)
        it = iter(df)
        head = batches(df, it, stop) if stop else []
        state = json.loads(json.dumps(df.state_dict()))
    with make() as resumed:
        resumed.reset_state()
        resumed.load_state_dict(state)
        rest, following = batches(resumed), batches(resumed)
    # The pass: what came before the checkpoint and after it, each batch once.
    assert sorted(head + rest) == sorted(uninterrupted[passes_before])
    # The next pass is the one the uninterrupted run made (in arrival order, which varies).
    assert sorted(following) == sorted(uninterrupted[passes_before + 1])


def test_a_resumed_worker_reproduces_at_most_a_few_datapoints(monkeypatch):
    monkeypatch.setattr(_loops, "MARK_ITEMS", 4)  # before the workers fork
    with zmq_runner() as df:
        df.reset_state()
        it = iter(df)
        batches(df, it, 25)
        state = df.state_dict()
        batches(df, it)
    skips = [worker["skip"] for worker in state["state"]["workers"]]
    assert all(0 <= skip <= 4 for skip in skips), skips


def test_state_after_a_whole_pass_and_in_a_new_process(tmp_path):
    with zmq_runner() as df:
        df.reset_state()
        batches(df)
        state = df.state_dict()
        want = sorted(batches(df))
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_resume import zmq_runner, batches
        with zmq_runner() as df:
            df.reset_state()
            df.load_state_dict(json.load(open({str(path)!r})))
            print(json.dumps(sorted(batches(df))))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert [tuple(b) for b in json.loads(proc.stdout)] == want


def test_clone_mode_and_non_strict_mappers_say_what_to_use_instead():
    with D.MultiProcessRunnerZMQ(source(), 2) as clones:
        clones.reset_state()
        with pytest.raises(ResumeNotSupportedError, match="exactly_once=True"):
            clones.state_dict()
    with D.MultiThreadMapData(source(), num_thread=2, map_func=lambda dp: dp) as mapper:
        mapper.reset_state()
        with pytest.raises(ResumeNotSupportedError, match="strict=True"):
            mapper.state_dict()


# -- mappers ---------------------------------------------------------------------------


def inputs():
    return D.DataFromList([[i] for i in range(90)], shuffle=True, seed=3)


def drop_sevens(dp):
    return None if dp[0] % 7 == 0 else [dp[0] * 2]


MAPPERS = {
    "threads": lambda ordered: D.MultiThreadMapData(
        inputs(), 2, drop_sevens, strict=True, ordered=ordered, buffer_size=8
    ),
    "processes": lambda ordered: D.MultiProcessMapDataZMQ(
        inputs(), 2, drop_sevens, strict=True, ordered=ordered, buffer_size=8
    ),
    "map-and-batch": lambda ordered: D.MultiProcessMapAndBatchDataZMQ(
        inputs(), 2, lambda dp: [dp[0] * 2], 4, strict=True, ordered=ordered, buffer_size=8
    ),
}


@pytest.mark.parametrize("kind", MAPPERS)
@pytest.mark.parametrize("ordered", [True, False])
def test_strict_mappers_resume(kind, ordered):
    # In order: bit-identical; as results come: the same datapoints, each once.
    check_resume(lambda: MAPPERS[kind](ordered), ordered=ordered)


def test_a_resumed_mapper_reads_again_only_a_few_tasks(monkeypatch):
    from dataflow.parallel import _resume

    monkeypatch.setattr(_resume, "SNAPSHOT_TASKS", 8)
    with MAPPERS["processes"](False) as df:
        df.reset_state()
        it = iter(df)
        for _ in range(50):
            next(it)
        state = df.state_dict()["state"]
    # Resumed, it reads again the tasks from its snapshot to the first not handed
    # out (a snapshot's worth, and what was in flight), and computes again only the
    # tasks in flight when it was saved: those not handed out below the last one
    # handed out. Tasks handed out after the first not handed out are many when a
    # worker holds that one while the other goes on (the machine is busy).
    done = state["done"]
    in_flight = max(done) + 1 - state["low"] - len(done) if done else 0
    assert state["low"] - state["n"] <= 8 + 8 and in_flight <= 8, state


def test_a_mapper_over_an_input_without_the_protocol_runs_and_says_why_it_cannot_save():
    with D.MultiThreadMapData(Opaque(), 2, lambda dp: dp, strict=True) as df:
        df.reset_state()
        assert sorted(dp[0] for dp in df) == list(range(6))
        it = iter(df)
        next(it)
        with pytest.raises(ResumeNotSupportedError, match="Opaque"):
            df.state_dict()
        del it


def test_a_state_from_another_number_of_workers_is_refused():
    with zmq_runner(num_proc=2) as df:
        df.reset_state()
        batches(df, iter(df), 5)
        state = df.state_dict()
    with zmq_runner(num_proc=3) as other:
        other.reset_state()
        with pytest.raises(ValueError, match="not from this pipeline|number of workers"):
            other.load_state_dict(state)


class Opaque(D.DataFlow):
    """A source of one's own without the resume protocol."""

    def __iter__(self):
        yield from ([i] for i in range(6))

    def __len__(self):
        return 6


def test_a_worker_dataflow_without_the_protocol_still_runs_and_says_why_it_cannot_save():
    with D.MultiProcessRunnerZMQ(Opaque(), 1, exactly_once=True) as df:
        df.reset_state()
        it = iter(df)
        assert [dp[0] for dp in batches_of(it, 3)] == [0, 1, 2]
        with pytest.raises(ResumeNotSupportedError, match="Opaque"):
            df.state_dict()
        assert [dp[0] for dp in it] == [3, 4, 5]


def batches_of(it, n):
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize(
    "make",
    [lambda: thread_runner(), lambda: MAPPERS["threads"](True)],
    ids=["runner", "mapper"],
)
def test_a_state_saved_right_after_loading_is_the_loaded_one(make):
    with make() as df:
        df.reset_state()
        it = iter(df)
        head = [next(it) for _ in range(7)]
        state = json.loads(json.dumps(df.state_dict()))
        rest = list(it)
    with make() as loaded:
        loaded.reset_state()
        loaded.load_state_dict(state)
        again = json.loads(json.dumps(loaded.state_dict()))  # a checkpoint before reading
    with make() as resumed:
        resumed.reset_state()
        resumed.load_state_dict(again)
        assert sorted(map(repr, list(resumed))) == sorted(map(repr, rest))
    assert len(head) == 7


def test_a_runner_that_has_iterated_refuses_a_state():
    with thread_runner() as df:
        df.reset_state()
        state = df.state_dict()
        next(iter(df))
        with pytest.raises(ValueError, match="freshly built pipeline"):
            df.load_state_dict(state)
