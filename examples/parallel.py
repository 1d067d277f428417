"""Parallel map: spread a CPU-heavy pure-Python function over worker processes.

Featurizes synthetic text documents (hashed character trigrams, counted in
a plain Python loop) three ways: serially with MapData, with threads
(MultiThreadMapData), and with processes (MultiProcessMapDataZMQ in strict,
ordered mode). Prints a throughput table and checks that the process
version yields exactly what the serial one does, in the same order.

Threads barely help here: pure-Python code holds the GIL. Processes scale
with the number of CPUs. See docs/parallel.md for when to use which.

Run: python examples/parallel.py
"""

import os

import numpy as np

import dataflow as D
from dataflow.debug import measure_throughput, throughput_table

QUICK = os.environ.get("DATAFLOW_EXAMPLE_QUICK") == "1"  # set by the test suite
NUM_DOCS = 300 if QUICK else 3_000
DOC_CHARS = 2_000
NUM_BINS = 64
NUM_WORKERS = max(2, min(4, os.cpu_count() or 1))


def synthetic_documents(num_docs: int, seed: int = 0) -> list:
    """``[text, label]`` datapoints: random lower-case words, and a label in 0..9."""
    rng = np.random.RandomState(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz  "))
    docs = []
    for _ in range(num_docs):
        text = "".join(rng.choice(letters, size=DOC_CHARS).tolist())
        docs.append([text, int(rng.randint(10))])
    return docs


def featurize(dp: list) -> list:
    """``[text, label]`` -> ``[float32 (NUM_BINS,) trigram histogram, label]``.

    Deliberately pure Python (a loop over every character), as tokenizers,
    parsers and hand-written feature code often are.
    """
    text, label = dp
    counts = [0] * NUM_BINS
    for i in range(len(text) - 2):
        h = 0
        for ch in text[i : i + 3]:
            h = (h * 31 + ord(ch)) & 0xFFFF
        counts[h % NUM_BINS] += 1
    features = np.asarray(counts, dtype=np.float32)
    return [features / max(1.0, float(features.sum())), label]


def pipeline(kind: str, docs: list) -> D.DataFlow:
    """The same map, run serially, in threads or in processes."""
    source = D.DataFromList(docs, shuffle=False)
    if kind == "serial":
        return D.MapData(source, featurize)
    if kind == "threads":
        return D.MultiThreadMapData(
            source, num_thread=NUM_WORKERS, map_func=featurize, strict=True, ordered=True
        )
    return D.MultiProcessMapDataZMQ(
        source, num_proc=NUM_WORKERS, map_func=featurize, strict=True, ordered=True
    )


def main() -> None:
    docs = synthetic_documents(NUM_DOCS)
    rows = [
        ("serial", "MapData (1 process)"),
        ("threads", f"MultiThreadMapData ({NUM_WORKERS} threads)"),
        ("processes", f"MultiProcessMapDataZMQ ({NUM_WORKERS} processes)"),
    ]
    results, outputs = [], {}
    for kind, name in rows:
        with pipeline(kind, docs) as df:
            df.reset_state()
            results.append(measure_throughput(df, size=len(df), name=name))
            outputs[kind] = [dp for dp in df]  # a second pass, for the comparison below

    serial, parallel = outputs["serial"], outputs["processes"]
    same = len(serial) == len(parallel) and all(
        np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(serial, parallel)
    )
    assert same, "strict, ordered MultiProcessMapDataZMQ must yield what MapData yields"

    cpus = os.cpu_count()
    print(f"Featurizing {NUM_DOCS:,} documents of {DOC_CHARS:,} characters ({cpus} CPUs):")
    print(throughput_table(results))
    print(f"\nProcesses yielded the same {len(parallel):,} datapoints as serial, in order.")
    speedup = results[2].datapoints_per_s / results[0].datapoints_per_s
    print(f"Speed-up with {NUM_WORKERS} processes: {speedup:.1f}x (at most the free CPUs).")


if __name__ == "__main__":
    main()
