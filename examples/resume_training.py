"""Resume a training loop after a kill, mid-epoch, without seeing data twice.

A toy training loop saves a checkpoint every few steps: the model, the epoch
and the input pipeline's position (``df.state_dict()``), as JSON. The script
runs the loop three times, each in a new process:

1. a run that is killed with SIGKILL in the middle of its second epoch;
2. a run that loads the last checkpoint and finishes the job;
3. a run that is never interrupted.

The batches that the model of runs 1+2 trained on (up to the checkpoint, and
after it) equal those of run 3, and so do the final models.

Run: python examples/resume_training.py
"""

import json
import os
import signal
import subprocess
import sys
import tempfile

import dataflow as D

NUM_SAMPLES = 200
BATCH_SIZE = 8
EPOCHS = 3
CHECKPOINT_EVERY = 5  # steps
KILL_AT_STEP = 37  # in the second epoch (25 steps per epoch)


def make_pipeline():
    df = D.DataFromList([[i, float(i % 7)] for i in range(NUM_SAMPLES)], seed=0)
    df = D.MapDataComponent(df, lambda x: x * 0.5, 1)
    df = D.LocallyShuffleData(df, buffer_size=50, seed=1)
    df = D.BatchData(df, BATCH_SIZE)
    df.reset_state()
    return df


def save(path, checkpoint):
    """Write atomically, as a real job should: a kill never leaves half a file."""
    with open(path + ".tmp", "w") as f:
        json.dump(checkpoint, f)
    os.replace(path + ".tmp", path)


def train(workdir, kill_at_step=None):
    checkpoint_path = os.path.join(workdir, "checkpoint.json")
    df = make_pipeline()
    if os.path.exists(checkpoint_path):
        with open(checkpoint_path) as f:
            checkpoint = json.load(f)
        df.load_state_dict(checkpoint["data"])
    else:
        checkpoint = {"epoch": 0, "step": 0, "weight": 0.0, "seen": [], "data": None}
    epoch, step, weight = checkpoint["epoch"], checkpoint["step"], checkpoint["weight"]
    seen = checkpoint["seen"]  # the sample ids the model trained on, in order
    while epoch < EPOCHS:
        for ids, values in df:
            weight = 0.9 * weight + 0.1 * float(values.mean())  # "training"
            seen.extend(ids.tolist())
            step += 1
            if step % CHECKPOINT_EVERY == 0:
                state = {"epoch": epoch, "step": step, "weight": weight, "seen": seen}
                save(checkpoint_path, dict(state, data=df.state_dict()))
            if step == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # preempted, mid-epoch
        epoch += 1
        # the end of an epoch is a checkpoint too: the pipeline is between passes
        state = {"epoch": epoch, "step": step, "weight": weight, "seen": seen}
        save(checkpoint_path, dict(state, data=df.state_dict()))
    print(json.dumps({"weight": weight, "seen": seen}))


def run(workdir, *args):
    return subprocess.run(
        [sys.executable, __file__, "train", workdir, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def main():
    with tempfile.TemporaryDirectory() as interrupted, tempfile.TemporaryDirectory() as clean:
        killed = run(interrupted, str(KILL_AT_STEP))
        print(f"run 1: killed by signal {-killed.returncode} at step {KILL_AT_STEP}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = run(interrupted)
        assert resumed.returncode == 0, resumed.stderr
        uninterrupted = run(clean)
        assert uninterrupted.returncode == 0, uninterrupted.stderr
    a, b = json.loads(resumed.stdout), json.loads(uninterrupted.stdout)
    print(f"run 2: resumed from the checkpoint and trained on {len(a['seen'])} samples in all")
    print(f"run 3: never interrupted, trained on {len(b['seen'])} samples")
    same = a == b
    print(f"same batches, in the same order, and the same final model: {same}")
    if not same:
        sys.exit(1)
    # each epoch is a permutation of the data: nothing seen twice, nothing skipped
    per_epoch = NUM_SAMPLES // BATCH_SIZE * BATCH_SIZE
    for e in range(EPOCHS):
        assert len(set(a["seen"][e * per_epoch : (e + 1) * per_epoch])) == per_epoch


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        main()
