"""A tiny HTTP server on 127.0.0.1 for the download tests; never the internet."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from typing import Callable, Iterator


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files like ``SimpleHTTPRequestHandler``, without logging to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Answer requests with *handler* on a free loopback port; yield the base URL
    (ending in ``/``). The server is shut down and its thread joined on exit."""
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_directory(directory: str) -> contextlib.AbstractContextManager[str]:
    """Serve the files of *directory*; see :func:`serve`."""
    return serve(functools.partial(QuietHandler, directory=directory))
