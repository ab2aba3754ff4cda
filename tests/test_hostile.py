"""Hostile input against real servers over real sockets: after each case a well-behaved edge
request must still succeed with the right answer."""
import os
import pickle
import random
import socket
import struct
import threading
import time

import pytest
import torch

from net.cloud.monitor import MonitorServer
from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.wire.protocol import PROTOCOL_VERSION, ProtocolError, recv_frame

LIMITS = dict(header_timeout_s=0.5, idle_timeout_s=1.0, min_rate_bps=2000, max_connections=8)


@pytest.fixture(scope="module")
def cloud():
    server = CloudServer("127.0.0.1", 0, **LIMITS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def monitor():
    server = MonitorServer("127.0.0.1", 0, **LIMITS).start()
    yield server
    server.stop()


@pytest.fixture(params=["cloud", "monitor"])
def server(request):
    return request.getfixturevalue(request.param)


def assert_still_serves(server, chain_models):
    with CloudClient(*server.address) as client:
        if isinstance(server, CloudServer):
            model = chain_models["le_net"]
            x = torch.randn(1, 84, generator=torch.Generator().manual_seed(9))
            with torch.no_grad():
                expected = model[12:](x)
            assert torch.equal(client.infer("le_net", model.fingerprint, 12, x, want_logits=True).logits, expected)
        else:
            assert client.probe(10_000) > 0


def raw_exchange(server, data: bytes, timeout: float = 5.0):
    """Send raw bytes, then read what comes back: (reply header or None, error code or None)."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            header, _ = recv_frame(sock, idle_timeout_s=timeout)
            return header
        except (ProtocolError, OSError):
            return None


def frame(header_bytes: bytes, payload: bytes = b"", length: int | None = None) -> bytes:
    body_len = 4 + len(header_bytes) + len(payload) if length is None else length
    return struct.pack(">QI", body_len, len(header_bytes)) + header_bytes + payload


class Bomb:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_random_bytes(server, chain_models):
    rng = random.Random(0)
    reply = raw_exchange(server, bytes(rng.randrange(256) for _ in range(4096)))
    assert reply is None or reply["type"] == "error"
    assert_still_serves(server, chain_models)


def test_truncated_frame_then_close(server, chain_models):
    good = frame(b'{"type":"probe","tensors":[{"name":"data","dtype":"uint8","shape":[1000]}]}', b"x" * 1000)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(good[:len(good) // 2])
    assert_still_serves(server, chain_models)


def test_length_prefix_of_2_to_the_63(server, chain_models):
    reply = raw_exchange(server, struct.pack(">Q", 2**63) + b"\0" * 64)
    assert reply["code"] == "frame_too_large"
    assert_still_serves(server, chain_models)


@pytest.mark.parametrize("tensors, cut, model, code", [
    ([{"name": "x", "dtype": "float32", "shape": [1, 84]}], 12, "res_netz", "unknown_model"),
    ([{"name": "x", "dtype": "float32", "shape": [1, 84]}], 13, "le_net", "bad_cut"),
    ([{"name": "x", "dtype": "float32", "shape": [1, 84]}], -1, "le_net", "bad_cut"),
    ([{"name": "x", "dtype": "float64", "shape": [1, 84]}], 12, "le_net", "bad_tensor"),
    ([{"name": "x", "dtype": "float32", "shape": [1, 85]}], 12, "le_net", "bad_tensor"),
    ([{"name": "x", "dtype": "float32", "shape": [1, -84]}], 12, "le_net", "bad_tensor"),
    ([{"name": "x", "dtype": "float32", "shape": [2**40, 2**40]}], 12, "le_net", "bad_tensor"),
])
def test_headers_that_decode_but_are_wrong(cloud, chain_models, tensors, cut, model, code):
    header = {"type": "infer", "model": model, "cut": cut, "fingerprint": chain_models["le_net"].fingerprint,
              "tensors": tensors}
    import json
    # the body declares only 336 bytes, whatever the shape says: nothing big may be allocated
    reply = raw_exchange(cloud, frame(json.dumps(header).encode(), b"\0" * 336))
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert_still_serves(cloud, chain_models)


def test_pickle_payload_is_never_executed(server, chain_models, tmp_path):
    marker = tmp_path / "pwned"
    bomb = pickle.dumps(Bomb(str(marker)))
    assert_payloads = [frame(bomb), bomb, frame(b'{"type":"probe","tensors":[]}', bomb)]
    for data in assert_payloads:
        reply = raw_exchange(server, data)
        assert reply is None or reply["type"] == "error"
    assert not marker.exists()
    assert_still_serves(server, chain_models)


def test_silent_client_is_dropped_without_holding_up_others(server, chain_models):
    with socket.create_connection(server.address, timeout=5) as silent:
        assert_still_serves(server, chain_models)  # served while the silent one waits
        t0 = time.monotonic()
        reply, _ = recv_frame(silent, idle_timeout_s=5)  # the server says why, then closes
        assert reply["code"] == "idle_timeout" and time.monotonic() - t0 < 3
        assert silent.recv(1) == b""


def test_trickling_client_is_dropped_without_holding_up_others(server, chain_models):
    dropped = threading.Event()

    def trickle():
        data = frame(b'{"type":"probe","tensors":[{"name":"data","dtype":"uint8","shape":[100]}]}', b"x" * 100)
        with socket.create_connection(server.address, timeout=5) as sock:
            try:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)  # 5 bytes a second
            except OSError:
                dropped.set()  # the server closed the connection under us
                return
            try:
                reply, _ = recv_frame(sock, idle_timeout_s=5)
                if reply.get("code") == "timeout":
                    dropped.set()
            except (ProtocolError, OSError):
                dropped.set()

    thread = threading.Thread(target=trickle)
    thread.start()
    assert_still_serves(server, chain_models)
    thread.join(30)
    assert dropped.is_set()
    assert_still_serves(server, chain_models)


def test_connections_over_the_limit_are_refused_politely(chain_models):
    with CloudServer("127.0.0.1", 0, max_connections=2).start() as server:
        holders = [socket.create_connection(server.address, timeout=5) for _ in range(2)]
        try:
            time.sleep(0.2)  # both admitted
            with socket.create_connection(server.address, timeout=5) as extra:
                reply, _ = recv_frame(extra, idle_timeout_s=5)
            assert reply["type"] == "error" and reply["code"] == "busy"
        finally:
            for s in holders:
                s.close()
        time.sleep(0.2)
        assert_still_serves(server, chain_models)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def mutate(rng: random.Random, good: bytes) -> bytes:
    data = bytearray(good)
    choice = rng.randrange(5)
    if choice == 0:  # flip some bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:  # truncate
        data = data[:rng.randrange(len(data))]
    elif choice == 2:  # lie about the body length
        data[:8] = struct.pack(">Q", rng.choice([0, 3, len(data), 2**32, 2**63 - 1, rng.randrange(2**64)]))
    elif choice == 3:  # lie about the header length
        data[8:12] = struct.pack(">I", rng.randrange(2**32))
    else:  # garbage appended
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(data)


def test_fuzz_malformed_frames(cloud, chain_models):
    import json
    rng = random.Random(1234)
    fingerprint = chain_models["le_net"].fingerprint
    header = {"type": "infer", "model": "le_net", "cut": 12, "fingerprint": fingerprint,
              "tensors": [{"name": "x", "dtype": "float32", "shape": [1, 84]}]}
    good = frame(json.dumps(header).encode(), b"\0" * 336)
    assert raw_exchange(cloud, good)["type"] == "result"
    before = rss_mb()
    deadline = time.monotonic() + 60
    sent = 0
    while sent < 300 and time.monotonic() < deadline:
        raw_exchange(cloud, mutate(rng, good), timeout=2)
        sent += 1
    assert sent >= 100
    assert rss_mb() - before < 200  # no leak that grows with the number of bad frames
    assert_still_serves(cloud, chain_models)


# --- slow senders, stop, the handshake, the backlog ---------------------------------------------

def declare_and_trickle(address, nbytes: int, stop: threading.Event, interval_s: float = 0.5):
    """A client that declares an `nbytes` probe and sends its body at 2 B/s; returns what the
    server said (an error reply) or None when the connection was cut."""
    import json
    header = json.dumps({"type": "probe", "tensors": [{"name": "data", "dtype": "uint8", "shape": [nbytes]}]}).encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(struct.pack(">QI", 4 + len(header) + nbytes, len(header)) + header)
        try:
            while not stop.is_set():
                sock.sendall(b"x")
                if select_readable(sock, interval_s):
                    break
            reply, _ = recv_frame(sock, idle_timeout_s=5)
            return reply
        except (ProtocolError, OSError):
            return None


def select_readable(sock, timeout_s: float) -> bool:
    import select
    return bool(select.select([sock], [], [], timeout_s)[0])


def test_a_client_declaring_60_mib_and_trickling_is_dropped_within_a_few_windows(chain_models):
    """The minimum rate is judged over every window of rate_window_s: not a deadline of
    header_timeout + 60 MiB / min_rate (17 hours at these settings)."""
    with CloudServer("127.0.0.1", 0, min_rate_bps=1000, rate_window_s=0.5).start() as server:
        stop = threading.Event()
        t0 = time.monotonic()
        reply = declare_and_trickle(server.address, 60 * 2**20, stop)
        stop.set()
        assert reply is not None and reply["code"] == "timeout"
        assert time.monotonic() - t0 < 4
        assert_still_serves(server, chain_models)


def test_stop_is_prompt_while_a_client_is_still_uploading():
    server = CloudServer("127.0.0.1", 0, min_rate_bps=1).start()  # 2 B/s is fast enough here
    stop = threading.Event()
    thread = threading.Thread(target=declare_and_trickle, args=(server.address, 60 * 2**20, stop), daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the upload has started
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 3  # was the 30 s grace
    finally:
        stop.set()
        thread.join(10)


def test_nothing_but_the_handshake_before_the_token_is_proved(chain_models):
    """A hello naming a model must not make the cloud build it for a client that has not
    proved the token; once proved, the model is checked as before."""
    from net.edge.client import CloudRefused
    from net.wire import auth as auth
    from net.wire.protocol import send_frame
    with CloudServer("127.0.0.1", 0, token=b"secret", **LIMITS).start() as server:
        with socket.create_connection(server.address, timeout=5) as sock:
            send_frame(sock, {"type": "hello", "version": PROTOCOL_VERSION, "model": "vgg_net", "fingerprint": "x",
                              "client_nonce": auth.new_nonce()})
            hello, _ = recv_frame(sock, idle_timeout_s=5)
            assert hello["type"] == "hello"
            send_frame(sock, {"type": "auth", "client_proof": "0" * 64})
            refused, _ = recv_frame(sock, idle_timeout_s=5)
            assert refused["code"] == "auth_failed"
        assert "vgg_net" not in server.models._models
        model = chain_models["le_net"]
        with pytest.raises(CloudRefused, match="weights_mismatch"):
            CloudClient(*server.address, token=b"secret", weights=("le_net", "0" * 16)).connect()
        with CloudClient(*server.address, token=b"secret", weights=("le_net", model.fingerprint)) as client:
            client.connect()  # the right weights pass after the proof


@pytest.mark.parametrize("token", [None, b"secret"])
@pytest.mark.parametrize("header", [
    {"type": ["infer"], "tensors": []},
    {"type": {"a": 1}, "tensors": []},
    {"type": "hello", "version": PROTOCOL_VERSION, "tensors": [{"name": "x", "dtype": ["float32"], "shape": [1]}]},
    {"type": "infer", "model": "le_net", "cut": 12, "tensors": [{"name": "x", "dtype": {"f": 1}, "shape": [1, 84]}]},
])
def test_a_type_or_dtype_sent_as_a_list_is_a_client_error_in_one_log_line(chain_models, caplog, token, header):
    import json
    import logging
    payload = b"\0" * (4 if header["tensors"] and header["tensors"][0]["shape"] == [1] else 336 if header["tensors"] else 0)
    with CloudServer("127.0.0.1", 0, token=token, **LIMITS).start() as server:
        with caplog.at_level(logging.INFO, logger="neurosurgeon.server"):
            reply = raw_exchange(server, frame(json.dumps(header).encode(), payload))
            time.sleep(0.2)
        assert reply is not None and reply["type"] == "error"
        assert reply["code"] in ("bad_request", "bad_tensor", "auth_required"), reply
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        assert len([r for r in caplog.records if r.name == "neurosurgeon.server"]) <= 1


def test_the_listen_backlog_suits_the_connection_cap():
    """Connections queue in the kernel until the server accepts them: a burst of edges beyond
    socketserver's default backlog of 5 must not have its connection attempts dropped."""
    server = CloudServer("127.0.0.1", 0, max_connections=32)  # not started: nothing accepts
    socks = []
    try:
        for _ in range(20):
            socks.append(socket.create_connection(server.address, timeout=2))
    finally:
        for s in socks:
            s.close()
        server.server_close()
