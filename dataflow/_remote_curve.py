"""CURVE keys for :mod:`dataflow.remote`: making them, loading them, and the ZAP
authenticator that admits only the allowed senders; and the warning for an
unsecured receiver that binds a public address."""

from __future__ import annotations

import ipaddress
import os
import threading
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import zmq

__all__ = ["CurveServer", "CurveClient", "generate_keys", "warn_if_exposed"]

PathLike = Union[str, "os.PathLike[str]"]

_RECEIVER_SHAPE = (
    "a (secret key file, allowed) pair: this receiver's '.key_secret' file, and the "
    "senders' public '.key' files (a file, a directory of them, or a list)"
)
_SENDER_SHAPE = (
    "a (secret key file, server key file) pair: this sender's '.key_secret' file and the "
    "receiver's public '.key' file"
)


def _need_curve() -> None:
    if not zmq.has("curve"):  # pragma: no cover - pyzmq wheels ship libsodium
        raise ImportError(
            "curve= needs a ZeroMQ built with CURVE (libsodium): pip install --force-reinstall "
            "pyzmq (its wheels include it)"
        )


def generate_keys(directory: PathLike, name: str) -> Tuple[str, str]:
    """Write a new CURVE key pair named *name* into *directory*; the two paths.

    ``<name>.key`` holds the public key (give it to the other side) and
    ``<name>.key_secret`` the public and the secret key (keep it where it
    is used). Both are readable by their owner only, and *directory* is
    created with the same permissions if it does not exist. An existing
    key pair of that name is refused rather than overwritten.

    Args:
        directory: where to write the files.
        name: the base name of the files, e.g. ``'receiver'`` or ``'sender-a'``.

    Returns:
        ``(public key file, secret key file)``.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> public, secret = generate_keys(folder, "receiver")
        >>> os.path.basename(public), os.path.basename(secret)
        ('receiver.key', 'receiver.key_secret')
        >>> oct(os.stat(secret).st_mode & 0o777)
        '0o600'
    """
    import zmq.auth

    _need_curve()
    if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
        raise ValueError(f"name must be a non-empty file name such as 'receiver', got {name!r}")
    directory = os.fspath(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public = os.path.join(directory, f"{name}.key")
    secret = public + "_secret"
    for path in (public, secret):
        if os.path.exists(path):
            raise FileExistsError(
                f"generate_keys: {path!r} exists; remove it first or choose another name"
            )
    old = os.umask(0o077)
    try:
        made = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    for path in made:
        os.chmod(path, 0o600)
    return public, secret


def _load(path: PathLike, owner: str, secret: bool) -> Tuple[bytes, Optional[bytes]]:
    import zmq.auth

    try:
        public_key, secret_key = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"{owner}: cannot read the CURVE key file {path!r}: {err}") from None
    if secret and secret_key is None:
        raise ValueError(
            f"{owner}: {path!r} holds no secret key; pass the '.key_secret' file of the pair "
            "(generate_keys writes both)"
        )
    return public_key, secret_key


def _key_files(allowed: Any, owner: str) -> List[str]:
    if isinstance(allowed, (str, os.PathLike)):
        allowed = [allowed]
    if not isinstance(allowed, (list, tuple)) or not allowed:
        raise TypeError(f"curve must be {_RECEIVER_SHAPE}, got allowed={allowed!r}")
    files: List[str] = []
    for item in allowed:
        path = os.fspath(item)
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".key"))
            if not found:
                raise ValueError(f"{owner}: the directory {path!r} holds no '.key' file")
            files.extend(found)
        else:
            files.append(path)
    return files


class CurveServer(NamedTuple):
    """The receiver's CURVE keys: its key pair and the public keys it admits."""

    public: bytes
    secret: bytes
    allowed: frozenset  #: z85-encoded public keys of the senders it admits

    @classmethod
    def parse(cls, curve: Any, owner: str) -> CurveServer:
        _need_curve()
        if not isinstance(curve, (tuple, list)) or len(curve) != 2:
            raise TypeError(f"curve must be {_RECEIVER_SHAPE}, got {curve!r}")
        public, secret = _load(curve[0], owner, secret=True)
        assert secret is not None
        allowed = frozenset(_load(path, owner, False)[0] for path in _key_files(curve[1], owner))
        return cls(public, secret, allowed)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True


class CurveClient(NamedTuple):
    """The sender's CURVE keys: its key pair and the receiver's public key."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def parse(cls, curve: Any, owner: str) -> CurveClient:
        _need_curve()
        if not isinstance(curve, (tuple, list)) or len(curve) != 2:
            raise TypeError(f"curve must be {_SENDER_SHAPE}, got {curve!r}")
        public, secret = _load(curve[0], owner, secret=True)
        assert secret is not None
        server = _load(curve[1], owner, secret=False)[0]
        return cls(public, secret, server)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server


class _Allowed:
    """The ZAP authenticator's question: is this client key one of ours?"""

    def __init__(self, keys: frozenset) -> None:
        self.keys = keys
        self.refused = 0  # read by the receiver's stats; written by the ZAP thread only

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.keys:
            return True
        self.refused += 1
        return False


def start_authenticator(ctx: zmq.Context, server: CurveServer) -> Tuple[Any, _Allowed]:
    """A started ZAP authenticator on *ctx* that admits *server.allowed* only; stop it
    with ``.stop()`` before the context is terminated."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=_quiet_log())
    auth.start()
    allowed = _Allowed(server.allowed)
    try:
        auth.configure_curve_callback("*", allowed)
    except BaseException:
        auth.stop()
        raise
    return auth, allowed


def _quiet_log() -> Any:
    import logging

    return logging.getLogger("dataflow.remote.auth")


# ---- the warning for a public address without keys --------------------------------

_warned: Dict[str, bool] = {}
_warned_lock = threading.Lock()
_LOCAL_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def is_loopback(addr: str) -> bool:
    """Whether *addr* (a ZeroMQ endpoint) can be reached from this machine only."""
    scheme, _, rest = addr.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme not in ("tcp", "ws", "wss"):
        return False
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.split(";")[-1].strip("[]")  # 'tcp://src;dst', '[::1]'
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface name, or a host name
        return False


def warn_if_exposed(addrs: Sequence[str], owner: str, what: str) -> None:
    """Warn once per address that binding it without CURVE keys lets anyone in."""
    for addr in addrs:
        if is_loopback(addr):
            continue
        with _warned_lock:
            if _warned.get(addr):
                continue
            _warned[addr] = True
        warnings.warn(
            f"{owner} binds {addr!r} without CURVE keys: anyone who can reach it {what}. "
            "Bind a loopback address, or pass curve= keys (dataflow.remote.generate_keys; "
            "see 'More than one machine' in the documentation)",
            UserWarning,
            stacklevel=4,
        )
