"""``python -m dataflow.receive ADDRESS``: is the trainer starved? Measure what arrives.

Binds *ADDRESS* (or connects, with ``--connect``) with a
:class:`~dataflow.RemoteDataZMQ` that keeps waiting for senders, takes
every datapoint as fast as it comes, and prints a line every second: the
datapoints and megabytes per second, the live senders, the messages
dropped, and the datapoints received from each sender so far. It stops
after ``--seconds`` or at Ctrl-C (exit code 0), with a summary line. Run it
where the trainer will run, with the trainer stopped: if it receives less
than the trainer consumes, add senders (or make them faster).

Example::

    python -m dataflow.receive tcp://0.0.0.0:8877 --seconds 30 \\
        --curve-secret keys/receiver.key_secret --curve-allow keys/senders/
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, List, Optional, Sequence, TextIO

from .remote import RemoteDataZMQ, RemoteStats

__all__: List[str] = []

_PROG = "python -m dataflow.receive"
_HEADER = (
    f"{'time s':>7}  {'dp/s':>10}  {'MB/s':>8}  {'live':>4}  {'dropped':>7}  senders (datapoints)"
)


def _senders(stats: RemoteStats) -> str:
    parts = []
    for s in stats.senders:
        who = f"{s.host}:{s.pid}" if s.host else (f"{s.id:08x}" if s.id else s.address)
        parts.append(f"{who} {s.received:,} ({s.state})")
    return "; ".join(parts) if parts else "-"


def _row(elapsed: float, dps: float, mbps: float, stats: RemoteStats) -> str:
    live = sum(1 for s in stats.senders if s.state == "live")
    return (
        f"{elapsed:7.1f}  {dps:10,.0f}  {mbps:8.2f}  {live:4d}  {stats.dropped:7d}  "
        f"{_senders(stats)}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Receive from send_dataflow_zmq senders and print the rates."
    )
    parser.add_argument("addr", help="e.g. tcp://0.0.0.0:8877")
    parser.add_argument("--connect", action="store_true", help="connect instead of binding")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--hwm", type=int, default=50)
    parser.add_argument("--allow-pickle", action="store_true")
    parser.add_argument("--curve-secret", help="this receiver's .key_secret file")
    parser.add_argument(
        "--curve-allow", nargs="+", help="the senders' public .key files or directories"
    )
    return parser


def run(receiver: RemoteDataZMQ, seconds: Optional[float], out: TextIO) -> RemoteStats:
    """Receive until *seconds* passed (or Ctrl-C), printing a row each second."""
    start = last = time.monotonic()
    last_count = last_bytes = 0
    print(_HEADER, file=out, flush=True)
    end = None if seconds is None else start + seconds
    try:
        while end is None or time.monotonic() < end:
            try:
                for _ in receiver:
                    now = time.monotonic()
                    if now - last >= 1.0 or (end is not None and now >= end):
                        break
            except TimeoutError:  # a quiet second: print the row anyway
                pass
            now = time.monotonic()
            if now - last >= 1.0 or (end is not None and now >= end):
                stats = receiver.stats
                span = now - last
                dps = (stats.received - last_count) / span
                mbps = (stats.bytes - last_bytes) / span / 1e6
                print(_row(now - start, dps, mbps, stats), file=out, flush=True)
                last, last_count, last_bytes = now, stats.received, stats.bytes
    except KeyboardInterrupt:
        pass
    stats = receiver.stats
    elapsed = max(time.monotonic() - start, 1e-9)
    print(
        f"{_PROG}: {stats.received:,} datapoints ({stats.bytes / 1e6:,.1f} MB) in "
        f"{elapsed:.1f} s: {stats.received / elapsed:,.0f} dp/s, "
        f"{stats.bytes / elapsed / 1e6:,.2f} MB/s; {stats.dropped} messages dropped, "
        f"{stats.refused} connections refused",
        file=out,
        flush=True,
    )
    return stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; its exit code."""
    args = _parser().parse_args(argv)
    if args.seconds is not None and not args.seconds > 0:
        print(f"{_PROG}: --seconds must be positive, got {args.seconds}", file=sys.stderr)
        return 2
    if (args.curve_secret is None) != (args.curve_allow is None):
        print(f"{_PROG}: --curve-secret and --curve-allow go together", file=sys.stderr)
        return 2
    curve: Any = None if args.curve_secret is None else (args.curve_secret, args.curve_allow)
    try:
        receiver = RemoteDataZMQ(
            args.addr,
            hwm=args.hwm,
            bind=not args.connect,
            timeout=0.25,
            allow_pickle=args.allow_pickle,
            keep_waiting=True,
            curve=curve,
        )
        receiver.reset_state()
    except (OSError, TypeError, ValueError) as err:
        print(f"{_PROG}: {err}", file=sys.stderr)
        return 2
    with receiver:
        run(receiver, args.seconds, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
