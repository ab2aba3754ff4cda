"""Link emulation: bandwidth parsing and the pacer."""
import socket
import threading
import time

import pytest
import torch

from net.emulation.link import NETWORK_PRESETS_MBPS, LinkPacer, parse_bandwidth
from net.wire.protocol import recv_frame, send_frame


@pytest.mark.parametrize("text,mbps", [
    ("3g", 1.1), ("LTE", 5.85), (" WiFi ", 18.88), ("10", 10.0), ("0.5", 0.5), ("1e3", 1000.0),
])
def test_parse_bandwidth(text, mbps):
    assert parse_bandwidth(text) == mbps


@pytest.mark.parametrize("text", ["", "5g", "0", "-1", "nan", "inf", "10Mbps"])
def test_parse_bandwidth_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_bandwidth(text)
    for preset in NETWORK_PRESETS_MBPS:
        assert preset in str(info.value)


class RecordingSocket:
    def __init__(self):
        self.chunks = []

    def sendall(self, data):
        self.chunks.append(bytes(data))


def receive_bytes(sock, total: int, done: list) -> threading.Thread:
    def run():
        got = 0
        while got < total and (chunk := sock.recv(65536)):
            got += len(chunk)
        done.append((time.monotonic(), got))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_pacer_1mb_at_8mbps_takes_a_second():
    a, b = socket.socketpair()
    with a, b:
        data = memoryview(bytes(10**6))
        done = []
        reader = receive_bytes(b, len(data), done)
        pacer = LinkPacer(8.0)
        t0 = time.monotonic()
        pacer.send(a, data)
        reader.join(5)
    end, got = done[0]
    assert got == 10**6
    assert 0.9 <= end - t0 < 2.0  # 1.0 s minus at most one 16 KiB burst


def test_pacer_rate_change_mid_transfer():
    a, b = socket.socketpair()
    with a, b:
        done = []
        reader = receive_bytes(b, 10**6, done)
        pacer = LinkPacer(4.0)  # 2 s for 1 MB at this rate
        threading.Timer(0.25, lambda: setattr(pacer, "rate_mbps", 80.0)).start()
        t0 = time.monotonic()
        pacer.send(a, memoryview(bytes(10**6)))
        reader.join(5)
    elapsed = done[0][0] - t0
    assert 0.25 < elapsed < 1.0  # ~125 kB at 4 Mbit/s, the rest at 80 Mbit/s
    assert pacer.rate_mbps == pytest.approx(80.0)


def test_pacer_shared_by_threads():
    pacer = LinkPacer(8.0)  # 10^6 bytes/s shared
    sockets = [RecordingSocket(), RecordingSocket()]
    threads = [threading.Thread(target=pacer.send, args=(s, memoryview(bytes(100_000)))) for s in sockets]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 >= (200_000 - 16 * 1024) / 10**6 * 0.95
    assert all(sum(map(len, s.chunks)) == 100_000 for s in sockets)


def test_pacer_chunks_and_send_frame():
    pacer = LinkPacer(1000.0, burst_bytes=1000)
    sock = RecordingSocket()
    x = torch.arange(3000, dtype=torch.int32)
    sent = send_frame(sock, {"type": "probe"}, {"x": x}, pacer=pacer)
    assert sum(map(len, sock.chunks)) == sent
    assert max(map(len, sock.chunks)) <= 1000

    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"".join(sock.chunks))
        header, tensors = recv_frame(b)
    assert header["type"] == "probe" and torch.equal(tensors["x"], x)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), None])
def test_pacer_refuses_bad_rates(bad):
    with pytest.raises(ValueError):
        LinkPacer(bad)
    pacer = LinkPacer(1.0)
    with pytest.raises(ValueError):
        pacer.rate_mbps = bad
    assert pacer.rate_mbps == 1.0
