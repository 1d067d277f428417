"""Read-only LMDB environments shared within a process, safe across ``fork``.

LMDB forbids opening one database twice in a process, so all readers of a
data file in a process share one read-only environment: :func:`acquire`
opens it for the first reader (after checking the file's structure once per
process, see :mod:`._lmdb_check`) and :func:`release` closes it after the
last. A child started by ``fork`` inherits its parent's environments but
never uses or closes them: its first :func:`acquire` opens its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Dict, Iterator, Set, Tuple

from .._optional import import_optional
from ._lmdb_check import check_structure
from ._lmdb_format import data_file

__all__ = ["SharedEnv", "acquire", "borrowed_env", "release"]


class SharedEnv:
    """A read-only environment of one data file, shared by its readers in one process."""

    __slots__ = ("env", "file_id", "pid", "users")

    def __init__(self, env: Any, file_id: Tuple[int, int]) -> None:
        self.env = env
        self.file_id = file_id
        self.pid = os.getpid()
        self.users = 0


_SHARED: Dict[Tuple[int, int], SharedEnv] = {}
_SHARED_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _open_readonly(path: str, subdir: bool, file_size: int, user: str) -> Any:
    lmdb = import_optional("lmdb", user)
    try:
        env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, max_spare_txns=2)
    except lmdb.Error as err:
        raise ValueError(f"{user}: cannot open {path!r} as an LMDB database: {err}") from err
    end = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if file_size < end:
        env.close()
        raise ValueError(
            f"{user}: the LMDB database {path!r} is truncated: its data file has {file_size} "
            f"bytes but its pages end at byte {end}"
        )
    try:
        _check_once(data_file(path)[0], file_size, env.info()["last_txnid"], user)
    except BaseException:
        env.close()
        raise
    return env


# The data files (device, inode, size, modification time, transaction) whose
# structure this process has checked; forked children inherit it.
_CHECKED: Set[Tuple[int, int, int, int, int]] = set()


def _check_once(data_path: str, file_size: int, txnid: int, user: str) -> None:
    """Check the structure of the data file *data_path* (see :mod:`._lmdb_check`),
    unless this process has checked it as it is now."""
    st = os.stat(data_path)
    state = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, txnid)
    if state not in _CHECKED:
        check_structure(data_path, user, file_size)
        _CHECKED.add(state)


def acquire(path: str, user: str) -> SharedEnv:
    """This process's shared read-only environment of the database at *path*,
    with one more user."""
    data_path, subdir = data_file(path)
    try:
        st = os.stat(data_path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{user}: there is no LMDB database at {path!r}") from None
    file_id = (st.st_dev, st.st_ino)
    with _SHARED_LOCK:
        shared = _SHARED.get(file_id)
        if shared is not None and shared.pid != os.getpid():
            # This process's copy of an environment that its parent opened before fork.
            shared.env.close()
            shared = None
        if shared is None:
            env = _open_readonly(path, subdir, st.st_size, user)
            shared = _SHARED[file_id] = SharedEnv(env, file_id)
        shared.users += 1
    return shared


def release(shared: SharedEnv) -> None:
    """Drop one user of *shared*; the last one closes the environment."""
    with _SHARED_LOCK:
        if shared.pid != os.getpid():
            return  # inherited through fork: the parent process owns it
        shared.users -= 1
        if shared.users == 0:
            shared.env.close()
            if _SHARED.get(shared.file_id) is shared:
                del _SHARED[shared.file_id]


@contextlib.contextmanager
def borrowed_env(path: str, user: str) -> Iterator[Any]:
    """The shared environment of *path* for the duration of the block."""
    shared = acquire(path, user)
    try:
        yield shared.env
    finally:
        release(shared)
