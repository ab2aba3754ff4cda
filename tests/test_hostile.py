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
from net.wire.protocol import ProtocolError, recv_frame

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
