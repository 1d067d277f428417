"""``python -m dataflow.keys DIRECTORY [NAME ...]``: make CURVE key pairs.

Writes ``NAME.key`` (public) and ``NAME.key_secret`` (public and secret) for
each *NAME* (default: ``receiver`` and ``sender``) into *DIRECTORY*, readable
by their owner only, with :func:`dataflow.remote.generate_keys`. Give the
receiver its ``receiver.key_secret`` and the senders' ``.key`` files; give
each sender its ``.key_secret`` and ``receiver.key``.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from .remote import generate_keys

__all__: List[str] = []


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m dataflow.keys", description="Make CURVE key pairs for dataflow.remote."
    )
    parser.add_argument("directory")
    parser.add_argument("names", nargs="*", default=["receiver", "sender"])
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            public, secret = generate_keys(args.directory, name)
        except (OSError, ValueError) as err:
            print(f"python -m dataflow.keys: {err}", file=sys.stderr)
            return 2
        print(f"{name}: public {public}, secret {secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
