"""``python -m dataflow.serve FILE.py:FUNCTION --addr ADDRESS``: serve a pipeline.

Loads *FUNCTION* from the Python file *FILE.py*, calls it without arguments
to build a :class:`~dataflow.DataFlow`, and sends it to a
:class:`~dataflow.RemoteDataZMQ` with :func:`~dataflow.send_dataflow_zmq`,
pass after pass (``--passes``; each pass is a sender of its own, which says
hello, sends heartbeats and ends the pass). Ctrl-C stops it cleanly (exit
code 0); a file or function that cannot be loaded is a one-line error
(exit code 2); a pipeline that raises exits with code 1 after the receiver
was told.

Example (on each machine that prepares data)::

    python -m dataflow.serve pipeline.py:build --addr tcp://10.0.0.1:8877 \\
        --curve-secret keys/sender.key_secret --curve-server keys/receiver.key
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, List, Optional, Sequence

from ._remote_curve import CurveClient as _CurveClient
from ._remote_parts import _check_address
from .base import DataFlow
from .remote import send_dataflow_zmq

__all__: List[str] = []

_PROG = "python -m dataflow.serve"


class _LoadError(Exception):
    """A pipeline that cannot be loaded; the text is the whole message."""


def load_pipeline(spec: str) -> DataFlow:
    """The dataflow that ``FILE.py:FUNCTION`` builds, or :class:`_LoadError`."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise _LoadError(f"the pipeline must be FILE.py:FUNCTION, got {spec!r}")
    if not name.isidentifier():
        raise _LoadError(f"{name!r} in {spec!r} is not a Python function name")
    if not os.path.isfile(path):
        raise _LoadError(f"{path!r} is not a file")
    module_name = "_dataflow_serve_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise _LoadError(f"{path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # its own imports
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise _LoadError(f"{path!r} raised {type(err).__name__} while loading: {err}") from err
    build = getattr(module, name, None)
    if build is None or not callable(build):
        raise _LoadError(f"{path!r} has no function {name!r}")
    try:
        df = build()
    except Exception as err:
        raise _LoadError(f"{name}() in {path!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(df, DataFlow):
        raise _LoadError(f"{name}() in {path!r} returned {type(df).__name__}, not a DataFlow")
    return df


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Send the datapoints of a pipeline to a RemoteDataZMQ."
    )
    parser.add_argument("pipeline", help="FILE.py:FUNCTION, a function that returns a DataFlow")
    parser.add_argument("--addr", required=True, help="e.g. tcp://10.0.0.1:8877")
    parser.add_argument("--hwm", type=int, default=50, help="ZeroMQ high-water mark (50)")
    parser.add_argument("--bind", action="store_true", help="bind --addr instead of connecting")
    parser.add_argument(
        "--passes", type=int, default=0, help="how many passes to send; 0 (default): forever"
    )
    parser.add_argument("--format", choices=("msgpack", "pickle"), default=None)
    parser.add_argument("--curve-secret", help="this sender's .key_secret file")
    parser.add_argument("--curve-server", help="the receiver's public .key file")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; its exit code."""
    args = _parser().parse_args(argv)
    if args.passes < 0:
        print(f"{_PROG}: --passes must be >= 0, got {args.passes}", file=sys.stderr)
        return 2
    if (args.curve_secret is None) != (args.curve_server is None):
        print(f"{_PROG}: --curve-secret and --curve-server go together", file=sys.stderr)
        return 2
    curve: Any = None
    try:
        _check_address("--addr", args.addr)
        if args.curve_secret is not None:
            curve = (args.curve_secret, args.curve_server)
            _CurveClient.parse(curve, _PROG)
        df = load_pipeline(args.pipeline)
    except (_LoadError, TypeError, ValueError) as err:
        print(f"{_PROG}: {err}", file=sys.stderr)
        return 2
    done = 0
    try:
        while args.passes == 0 or done < args.passes:
            send_dataflow_zmq(df, args.addr, args.hwm, args.format, args.bind, curve=curve)
            done += 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted after {done} complete pass(es)", file=sys.stderr)
        return 0
    except OSError as err:
        if str(err).startswith("send_dataflow_zmq cannot"):  # bind or connect
            print(f"{_PROG}: {err}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
