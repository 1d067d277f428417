"""dataflow.to_torch: a pipeline as a torch IterableDataset, sharded, converted, resumable."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dataflow as D
from dataflow.integrations import _torch as torch_adapter
from dataflow.integrations import to_tensors

torch = pytest.importorskip("torch")
DataLoader = torch.utils.data.DataLoader
# torch warns when a DataLoader has more workers than the machine has cores (CI has 2).
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")

N = 60


def source(n=N, seed=3, shuffle=True):
    return D.DataFromList([[i, np.int32(i % 7)] for i in range(n)], shuffle=shuffle, seed=seed)


def drain(loader):
    """Every datapoint of one pass of *loader*; its worker processes are shut
    down before returning or raising (a traceback would keep them alive)."""
    it = iter(loader)
    try:
        return list(it)
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def firsts(loader):
    return [int(dp[0]) for dp in drain(loader)]


# -- what comes out --------------------------------------------------------------------


def test_one_process_yields_the_pipelines_datapoints_in_order():
    expected = source()
    expected.reset_state()
    want = [[int(a), int(b)] for a, b in expected]
    loader = DataLoader(D.to_torch(source()), batch_size=None, num_workers=0)
    got = [[int(a), int(b)] for a, b in loader]
    assert got == want
    assert [[int(a), int(b)] for a, b in loader] != want  # the next pass is a new shuffle


def test_arrays_become_tensors_and_narrow_ints_int64():
    dp = {
        "image": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "label": np.array([1, 2], dtype=np.int32),
        "weight": np.float32(0.5),
        "name": "x",
        "names": np.array(["a", "b"]),
        "nested": [np.array([1.0]), (np.int16(3),)],
    }
    out = to_tensors(dp)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (2, 3)
    assert out["label"].dtype == torch.int64 and out["label"].tolist() == [1, 2]
    assert out["weight"].dtype == torch.float32
    assert out["name"] == "x" and isinstance(out["names"], np.ndarray)
    assert out["nested"][0].dtype == torch.float64
    assert out["nested"][1][0].dtype == torch.int64
    assert to_tensors(np.array([1], np.int32), int64=False).dtype == torch.int32
    # the labels a batch of Python ints makes train with cross_entropy
    batch = D.BatchData(D.DataFromList([[np.zeros(3, np.float32), i % 3] for i in range(4)]), 4)
    batch.reset_state()
    x, y = to_tensors(next(iter(batch)))
    torch.nn.functional.cross_entropy(torch.zeros(4, 3), y)


def test_writable_arrays_are_shared_read_only_ones_copied_without_warning():
    arr = np.arange(4, dtype=np.float32)
    tensor = to_tensors(arr)
    arr[0] = 42
    assert tensor[0].item() == 42  # the same memory
    frozen = np.arange(4, dtype=np.float32)
    frozen.flags.writeable = False
    copied = to_tensors(frozen)  # from_numpy would warn on a read-only array
    copied[0] = 7
    assert frozen[0] == 0
    swapped = np.arange(3, dtype=">i8")
    assert to_tensors(swapped).tolist() == [0, 1, 2]


def test_len_and_unknown_len():
    assert len(D.to_torch(source())) == N
    with pytest.raises(TypeError):
        len(D.to_torch(D.DataFromGenerator(lambda: iter([[1]]))))


# -- sharding --------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [2, 3])
def test_torch_workers_each_read_their_own_shard(num_workers):
    loader = DataLoader(D.to_torch(source()), batch_size=None, num_workers=num_workers)
    for _ in range(2):
        got = firsts(loader)
        assert sorted(got) == list(range(N))  # each once: no duplicates, none lost


def test_persistent_workers_draw_a_new_partition_every_pass():
    ds = D.to_torch(source(), seed=1)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    passes = [[int(dp[0]) for dp in loader] for _ in range(3)]
    loader._iterator._shutdown_workers()
    for got in passes:
        assert sorted(got) == list(range(N))
    assert len({tuple(p) for p in passes}) == 3


def test_ranks_get_disjoint_shares_of_equal_size():
    for num_workers in (0, 2):
        shares = []
        for rank in range(4):
            ds = D.to_torch(source(n=62), rank=rank, world_size=4, seed=9)
            shares.append(firsts(DataLoader(ds, batch_size=None, num_workers=num_workers)))
            assert len(ds) == 15
        assert [len(s) for s in shares] == [15] * 4  # 62 = 4 * 15 + 2 dropped
        seen = [x for s in shares for x in s]
        assert len(set(seen)) == 60 and set(seen) <= set(range(62))


def test_ranks_of_a_batched_pipeline_yield_the_same_number_of_batches():
    counts = []
    for rank in range(3):
        ds = D.to_torch(D.BatchData(source(n=100), 8), rank=rank, world_size=3)
        counts.append(len(drain(DataLoader(ds, batch_size=None, num_workers=2))))
    assert len(set(counts)) == 1 and counts[0] >= 3


def test_set_epoch_draws_the_partition_alike_in_every_rank():
    def share(rank, epoch):
        ds = D.to_torch(source(), rank=rank, world_size=2, seed=4)
        ds.set_epoch(epoch)
        return set(firsts(DataLoader(ds, batch_size=None, num_workers=2)))

    assert share(0, 0) == share(0, 0)
    assert share(0, 0) | share(1, 0) == set(range(N)) and not share(0, 0) & share(1, 0)
    assert share(0, 1) != share(0, 0) and not share(0, 1) & share(1, 1)


def test_rank_defaults_to_torch_distributed(monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    ds = D.to_torch(source(), seed=0)
    assert (ds.share.rank, ds.share.world_size) == (1, 2)
    mine = set(firsts(ds))
    other = set(firsts(D.to_torch(source(), rank=0, world_size=2, seed=0)))
    assert len(mine) == len(other) == N // 2 and not mine & other


def test_a_runner_inside_splits_each_ranks_share_among_its_workers():
    shares = []
    for rank in range(2):
        runner = D.MultiProcessRunnerZMQ(source(), 2, exactly_once=True)
        ds = D.to_torch(runner, rank=rank, world_size=2, seed=2)
        assert len(ds) == N // 2
        shares.append(firsts(ds))
        runner.close()
    assert sorted(shares[0] + shares[1]) == list(range(N))


# -- refusals ----------------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="both rank and world_size"):
        D.to_torch(source(), rank=0)
    with pytest.raises(ValueError, match="not below world_size"):
        D.to_torch(source(), rank=2, world_size=2)
    with pytest.raises(TypeError, match="must be a DataFlow"):
        D.to_torch([[1]])
    with pytest.raises(ValueError, match="prefetch"):
        D.to_torch(source(), prefetch=0)


def test_a_pipeline_with_worker_processes_fails_at_once_in_torch_workers():
    runner = D.MultiProcessRunnerZMQ(source(), 2, exactly_once=True)
    loader = DataLoader(D.to_torch(runner), batch_size=None, num_workers=2)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        drain(loader)


def test_clone_mode_runner_is_refused_when_shared():
    runner = D.MultiThreadRunner(lambda: source(), num_prefetch=4, num_thread=2)
    ds = D.to_torch(runner, rank=0, world_size=2)
    with pytest.raises(ValueError, match="exactly_once=True"):
        list(ds)


def test_sources_that_do_not_shard_and_unknown_lengths_are_refused():
    gen = D.DataFromGenerator(lambda: ([i] for i in range(10)), size=10)
    with pytest.raises(ValueError, match="does not shard itself"):
        list(D.to_torch(gen, rank=0, world_size=2))
    unknown = D.DataFromGenerator(lambda: ([i] for i in range(10)))
    loader = DataLoader(D.to_torch(unknown), batch_size=None, num_workers=2)
    with pytest.raises(ValueError, match="len\\(\\) is unknown"):
        drain(loader)


def test_a_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"dataflow-ml\[torch\]"):
        D.to_torch(source())


# -- memory and device -------------------------------------------------------------------


def test_pin_memory_without_cuda_warns_once_and_still_feeds(monkeypatch):
    monkeypatch.setattr(torch_adapter, "_WARNED", [])
    ds = D.to_torch(source(), pin_memory=True)
    with pytest.warns(UserWarning, match="no CUDA device"):
        assert sorted(firsts(ds)) == list(range(N))


def test_pin_memory_pins_every_tensor_when_it_can(monkeypatch):
    pinned = []
    monkeypatch.setattr(torch_adapter, "_can_pin", lambda torch: True)
    monkeypatch.setattr(torch_adapter, "pin_tensor", lambda t: pinned.append(t) or t)
    got = firsts(D.to_torch(source(n=10), pin_memory=True, device="cpu"))
    assert sorted(got) == list(range(10)) and len(pinned) == 10  # the labels: ints stay ints


def test_device_transfer_runs_ahead_and_stops_when_the_loop_does():
    ds = D.to_torch(source(), device="cpu", prefetch=3)
    for i, (_, label) in enumerate(ds):
        assert label.device.type == "cpu"
        if i == 5:
            break  # the fixture fails the test if the prefetching thread is left behind
    assert sorted(firsts(ds)) == list(range(N))


def test_an_error_in_the_pipeline_reaches_the_loop_through_the_thread():
    def fail(dp):
        if dp[0] == 3:
            raise KeyError("bad record")
        return dp

    ds = D.to_torch(D.MapData(source(shuffle=False), fail), device="cpu")
    with pytest.raises(KeyError, match="bad record"):
        list(ds)


def test_device_in_torch_workers_is_refused():
    loader = DataLoader(D.to_torch(source(), device="cpu"), batch_size=None, num_workers=1)
    with pytest.raises(RuntimeError, match="training process only"):
        drain(loader)


# -- resume ------------------------------------------------------------------------------


def pipeline():
    return D.BatchData(D.LocallyShuffleData(source(n=200, seed=5), 30, seed=6), 4)


@pytest.mark.parametrize("options", [{}, {"device": "cpu", "prefetch": 3}])
@pytest.mark.parametrize("stop", [0, 1, 17, 49, 50])
def test_resume_continues_exactly(options, stop):
    full = D.to_torch(pipeline(), **options)
    want = [[b.tolist() for b in dp] for _ in range(2) for dp in full]
    ds = D.to_torch(pipeline(), **options)
    got = []
    it = iter(ds)
    for _ in range(stop):
        got.append([b.tolist() for b in next(it)])
    state = json.loads(json.dumps(ds.state_dict()))
    del it
    resumed = D.to_torch(pipeline(), **options)
    resumed.load_state_dict(state)
    for _ in range(2 if stop == 50 else 1):
        got.extend([b.tolist() for b in dp] for dp in resumed)
    if stop < 50:
        got.extend([b.tolist() for b in dp] for dp in resumed)
    assert got == want


@pytest.mark.parametrize("stop", [1, 29, 30])
def test_resume_of_one_rank_with_a_dropped_remainder(stop):
    def make():
        return D.to_torch(source(n=61), rank=1, world_size=2, seed=1)

    full = make()
    want = [firsts(full), firsts(full)]
    assert [len(p) for p in want] == [30, 30]
    ds, head = make(), []
    for dp in ds:
        head.append(int(dp[0]))
        if len(head) == stop:
            state = json.loads(json.dumps(ds.state_dict()))
            break
    resumed = make()
    resumed.load_state_dict(state)
    assert head + firsts(resumed) == want[0]
    assert firsts(resumed) == want[1]


def test_state_is_refused_in_torch_workers_and_checked_on_load():
    ds = D.to_torch(source())
    with pytest.raises(ValueError, match="not a state of a to_torch dataset"):
        ds.load_state_dict({"df": None})
    with pytest.raises(ValueError, match="version"):
        ds.load_state_dict({"version": 99, "mid_pass": False, "passes": 0, "count": 0, "df": None})

    def save_in_worker(worker_id):
        torch.utils.data.get_worker_info().dataset.state_dict()

    ds = D.to_torch(source())
    loader = DataLoader(ds, batch_size=None, num_workers=1, worker_init_fn=save_in_worker)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        drain(loader)


DISTRIBUTED = textwrap.dedent(
    """
    import os, sys
    import torch, torch.distributed as dist
    import dataflow as D

    def run(rank, path):
        dist.init_process_group("gloo", init_method="file://" + path, rank=rank, world_size=2)
        source = D.DataFromList([[i] for i in range(101)], shuffle=True, seed=rank)
        ds = D.to_torch(D.BatchData(source, 4), seed=7)  # rank and world from torch.distributed
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        seen = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            for (batch,) in loader:
                total = torch.tensor([1])
                dist.all_reduce(total)  # hangs if one rank ran out of batches first
                seen.extend(batch.tolist())
        counts = [None, None]
        dist.all_gather_object(counts, (len(ds), len(seen), sorted(seen)))
        if rank == 0:
            print(counts[0][0], counts[1][0], counts[0][1], counts[1][1],
                  len(set(counts[0][2][:0] + seen)))
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(run, args=(sys.argv[1],), nprocs=2)
    """
)


def test_ranks_of_a_real_process_group_never_wait_for_each_other(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(DISTRIBUTED)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "rendezvous")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a hang kills the ranks too
    )
    try:
        out, err = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the ranks hung: one ran out of batches while the other waited")
    assert proc.returncode == 0, err
    len0, len1, seen0, seen1, _ = map(int, out.split())
    # 101 datapoints over 2 ranks x 2 torch workers: shards of 25-26 make 6 batches each
    assert len0 == len1 and seen0 == seen1 == 2 * 4 * 12


def test_the_dataset_pickles_for_spawned_workers():
    ds = D.to_torch(source(), seed=3)
    ds.set_epoch(2)
    copy = pickle.loads(pickle.dumps(ds))
    assert type(copy) is type(ds) and copy._epoch == 2
    assert firsts(copy) == firsts(ds)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pinned_transfer_to_cuda():
    ds = D.to_torch(source(), pin_memory=True, device="cuda")
    for _, label in ds:
        assert label.device.type == "cuda"


@pytest.mark.parametrize("options", [{}, {"device": "cpu"}])
def test_resume_between_passes(options):
    full = D.to_torch(pipeline(), **options)
    want = [[[b.tolist() for b in dp] for dp in full] for _ in range(3)]
    ds = D.to_torch(pipeline(), **options)
    got = [[[b.tolist() for b in dp] for dp in ds]]
    state = json.loads(json.dumps(ds.state_dict()))
    resumed = D.to_torch(pipeline(), **options)
    resumed.load_state_dict(state)
    got += [[[b.tolist() for b in dp] for dp in resumed] for _ in range(2)]
    assert got == want


class Opaque(D.DataFlow):
    """A source of one's own without the resume protocol."""

    def __iter__(self):
        yield from ([np.int64(i)] for i in range(5))


@pytest.mark.parametrize("options", [{}, {"device": "cpu"}])
def test_a_pipeline_that_cannot_save_still_feeds_and_says_why_when_asked(options):
    ds = D.to_torch(Opaque(), **options)
    it = iter(ds)
    assert int(next(it)[0]) == 0
    with pytest.raises(NotImplementedError, match="Opaque"):
        ds.state_dict()
    assert [int(dp[0]) for dp in it] == [1, 2, 3, 4]


def test_set_epoch_with_persistent_workers_still_draws_a_new_partition_every_pass():
    ds = D.to_torch(source(), seed=1)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    passes = []
    for epoch in range(3):
        ds.set_epoch(epoch)  # reaches no persistent worker: they count their passes
        passes.append([int(dp[0]) for dp in loader])
    loader._iterator._shutdown_workers()
    assert all(sorted(p) == list(range(N)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3


def test_a_state_asked_in_the_training_process_does_not_spoil_the_next_epoch():
    ds = D.to_torch(source())
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(firsts(loader)) == list(range(N))
    ds.state_dict()  # read nothing here: the state of a dataset read in no worker yet
    assert sorted(firsts(loader)) == list(range(N))
