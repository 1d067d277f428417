"""Tests of CURVE authentication and encryption for dataflow.remote: the keys, a
receiver that admits only the allowed senders, and the warning for a receiver that
binds a public address without keys."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest
import zmq

import dataflow._remote_curve as curve_module
from dataflow import DataFlow, RemoteDataZMQ, send_dataflow_zmq
from dataflow.remote import generate_keys

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not zmq.has("curve"), reason="this ZeroMQ has no CURVE"),
]

WAIT_S = 20


def tcp_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def keys(tmp_path):
    made = {name: generate_keys(tmp_path, name) for name in ("receiver", "good", "bad")}
    return {name: {"public": p, "secret": s} for name, (p, s) in made.items()}


class Tagged(DataFlow):
    def __init__(self, tag, n, pause_s=0.0):
        self.tag, self.n, self.pause_s = tag, n, pause_s

    def __iter__(self):
        for i in range(self.n):
            time.sleep(self.pause_s)
            yield [self.tag, i]


class Sender(threading.Thread):
    def __init__(self, df, addr, **kwargs):
        super().__init__(name="test-sender")
        self.args, self.kwargs = (df, addr), kwargs
        self.result = self.error = None

    def run(self):
        import contextlib
        import io

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                self.result = send_dataflow_zmq(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: B036 - the test looks at it
            self.error = exc


class TestGenerateKeys:
    def test_writes_a_pair_readable_by_its_owner_only(self, tmp_path):
        folder = tmp_path / "keys"
        public, secret = generate_keys(folder, "sender-a")
        assert (public, secret) == (
            str(folder / "sender-a.key"),
            str(folder / "sender-a.key_secret"),
        )
        for path in (public, secret):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        with open(secret) as f:
            assert "secret-key" in f.read()
        with open(public) as f:
            assert "secret-key" not in f.read()

    def test_refuses_to_overwrite_a_pair(self, tmp_path):
        generate_keys(tmp_path, "receiver")
        with pytest.raises(FileExistsError, match="receiver.key' exists; remove it first"):
            generate_keys(tmp_path, "receiver")

    @pytest.mark.parametrize("name", ["", "a/b", ".hidden", 3])
    def test_a_bad_name_is_refused(self, tmp_path, name):
        with pytest.raises(ValueError, match="name must be a non-empty file name"):
            generate_keys(tmp_path, name)

    def test_the_command_line_tool(self, tmp_path):
        out = subprocess.run(
            [sys.executable, "-m", "dataflow.keys", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert sorted(os.listdir(tmp_path)) == [
            "receiver.key",
            "receiver.key_secret",
            "sender.key",
            "sender.key_secret",
        ]
        again = subprocess.run(
            [sys.executable, "-m", "dataflow.keys", str(tmp_path), "sender"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2 and "exists" in again.stderr


class TestCurve:
    def test_an_allowed_sender_with_the_right_keys_gets_through_encrypted(self, keys):
        addr = tcp_address()
        receiver_keys = (keys["receiver"]["secret"], [keys["good"]["public"]])
        with RemoteDataZMQ(addr, timeout=WAIT_S, curve=receiver_keys) as df:
            df.reset_state()
            sender = Sender(
                Tagged("good", 30),
                addr,
                curve=(keys["good"]["secret"], keys["receiver"]["public"]),
            )
            sender.start()
            received = list(df)
            sender.join(WAIT_S)
            assert df.stats.refused == 0
        assert received == [["good", i] for i in range(30)]
        assert sender.result == 30

    def test_senders_with_wrong_or_no_keys_are_refused_while_the_allowed_one_flows(self, keys):
        addr = tcp_address()
        receiver_keys = (keys["receiver"]["secret"], [keys["good"]["public"]])
        with RemoteDataZMQ(addr, timeout=WAIT_S, curve=receiver_keys) as df:
            df.reset_state()
            intruders = [
                # a key pair the receiver does not know
                Sender(
                    Tagged("bad", 5),
                    addr,
                    curve=(keys["bad"]["secret"], keys["receiver"]["public"]),
                    linger=3,
                ),
                # no keys at all
                Sender(Tagged("plain", 5), addr, linger=3),
            ]
            for s in intruders:
                s.start()
            good = Sender(
                Tagged("good", 40, pause_s=0.01),
                addr,
                curve=(keys["good"]["secret"], keys["receiver"]["public"]),
            )
            good.start()
            received = list(df)
            good.join(WAIT_S)
            for s in intruders:  # each learns that it was refused
                s.join(WAIT_S)
                assert not s.is_alive()
                assert isinstance(s.error, PermissionError), s.error
            assert "does not allow this sender's CURVE key" in str(intruders[0].error)
            assert "expects other security" in str(intruders[1].error)
            deadline = time.monotonic() + WAIT_S
            while df.stats.refused == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = df.stats
        assert received == [["good", i] for i in range(40)]
        # The sender with the unknown key is refused by the authenticator; the one
        # without keys already fails the CURVE handshake. Neither is ever a sender.
        assert stats.refused >= 1
        assert [(s.state, s.received) for s in stats.senders] == [("finished", 40)]
        assert stats.dropped == 0

    def test_a_directory_of_allowed_keys(self, keys, tmp_path):
        allowed = tmp_path / "allowed"
        allowed.mkdir()
        with open(keys["good"]["public"]) as f:
            (allowed / "good.key").write_text(f.read())
        addr = tcp_address()
        with RemoteDataZMQ(
            addr, timeout=WAIT_S, curve=(keys["receiver"]["secret"], str(allowed))
        ) as df:
            df.reset_state()
            sender = Sender(
                Tagged("good", 3), addr, curve=(keys["good"]["secret"], keys["receiver"]["public"])
            )
            sender.start()
            assert list(df) == [["good", i] for i in range(3)]
            sender.join(WAIT_S)

    def test_closing_stops_the_authenticator_thread(self, keys):
        before = set(threading.enumerate())
        df = RemoteDataZMQ(
            tcp_address(), curve=(keys["receiver"]["secret"], [keys["good"]["public"]])
        )
        df.reset_state()
        assert len(set(threading.enumerate()) - before) >= 1
        df.close()
        df.close()
        assert set(threading.enumerate()) - before == set()

    @pytest.mark.parametrize(
        "make, message",
        [
            (lambda k: "just-a-path", "curve must be a (secret key file, allowed) pair"),
            (lambda k: (k["receiver"]["public"], [k["good"]["public"]]), "holds no secret key"),
            (lambda k: ("/nonexistent.key_secret", [k["good"]["public"]]), "cannot read"),
            (lambda k: (k["receiver"]["secret"], []), "curve must be a (secret key file"),
        ],
    )
    def test_bad_receiver_keys(self, keys, make, message):
        with pytest.raises((TypeError, ValueError)) as info:
            RemoteDataZMQ(tcp_address(), curve=make(keys))
        assert message in str(info.value)

    def test_bad_sender_keys(self, keys):
        with pytest.raises(ValueError, match="holds no secret key"):
            send_dataflow_zmq(
                Tagged("x", 1),
                tcp_address(),
                curve=(keys["good"]["public"], keys["receiver"]["public"]),
            )
        with pytest.raises(TypeError, match="a \\(secret key file, server key file\\) pair"):
            send_dataflow_zmq(Tagged("x", 1), tcp_address(), curve="x")


class TestExposedWithoutKeys:
    def test_binding_every_interface_without_keys_warns_once(self, monkeypatch):
        monkeypatch.setattr(curve_module, "_warned", {})
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = s.getsockname()[1]
        addr = f"tcp://*:{port}"
        with pytest.warns(UserWarning) as caught:
            with RemoteDataZMQ(addr) as df:
                df.reset_state()
            with RemoteDataZMQ(addr) as df:
                df.reset_state()
        (warning,) = caught
        assert str(warning.message) == (
            f"RemoteDataZMQ binds {addr!r} without CURVE keys: anyone who can reach it can "
            "send it datapoints. Bind a loopback address, or pass curve= keys "
            "(dataflow.remote.generate_keys; see 'More than one machine' in the documentation)"
        )

    @pytest.mark.parametrize(
        "addr, local",
        [
            ("tcp://127.0.0.1:5555", True),
            ("tcp://127.5.0.1:5555", True),
            ("tcp://[::1]:5555", True),
            ("tcp://localhost:5555", True),
            ("ipc:///tmp/feed", True),
            ("tcp://*:5555", False),
            ("tcp://0.0.0.0:5555", False),
            ("tcp://10.0.0.1:5555", False),
            ("tcp://eth0:5555", False),
            ("tcp://[::]:5555", False),
        ],
    )
    def test_what_counts_as_local(self, addr, local):
        assert curve_module.is_loopback(addr) is local

    def test_loopback_and_keys_do_not_warn(self, keys):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with RemoteDataZMQ(tcp_address()) as df:
                df.reset_state()
            with RemoteDataZMQ(
                "tcp://*:*", curve=(keys["receiver"]["secret"], [keys["good"]["public"]])
            ) as df:
                df.reset_state()
