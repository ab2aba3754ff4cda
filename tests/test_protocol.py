"""Wire protocol: round trips, the golden frame, refusals, timeouts, and that nothing is unpickled."""
import json
import pickle
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
import torch

from net.wire.protocol import DTYPES, ConnectionClosed, ProtocolError, dtype_name, recv_frame, send_frame, tensor_nbytes


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def no_tensor_alloc(monkeypatch):
    """Fail the test if recv_frame allocates a tensor (refusals must come before any allocation)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.empty{args} called before the frame was refused")
    monkeypatch.setattr(torch, "empty", refuse)


def feed(sock, data: bytes, close: bool = False) -> threading.Thread:
    """Write raw bytes to sock from a thread (a socketpair's buffer is finite)."""
    def run():
        try:
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_frame(header, payload: bytes = b"", body_len: int | None = None, header_len: int | None = None) -> bytes:
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    if header_len is None:
        header_len = len(header_bytes)
    if body_len is None:
        body_len = 4 + len(header_bytes) + len(payload)
    return struct.pack(">QI", body_len, header_len) + header_bytes + payload


def expect_refusal(pair, data: bytes, code: str, **kwargs) -> ProtocolError:
    a, b = pair
    feed(a, data)
    with pytest.raises(ProtocolError) as info:
        recv_frame(b, **kwargs)
    assert info.value.code == code, info.value
    return info.value


# --- round trips ---------------------------------------------------------------------------

def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(2, 3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "f16": torch.randn(3, 3, generator=g).half(),
        "bf16": torch.randn(4, 2, generator=g).bfloat16(),
        "i64": torch.arange(-3, 3),
        "i32": torch.tensor([[2**31 - 1, -2**31]], dtype=torch.int32),
        "u8": torch.arange(256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "scalar_bool": torch.tensor(True),
        "empty": torch.zeros(0, 5),
        "transposed": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
    }


def test_round_trip_bytes_on_wire(pair):
    a, b = pair
    tensors = sample_tensors()
    header = {"type": "infer", "model": "le_net", "cut_point": 3, "nested": {"k": [1, None, "é"]}}
    sent = send_frame(a, header, tensors)
    a.shutdown(socket.SHUT_WR)
    wire = read_all(b)
    assert sent == len(wire)
    assert "tensors" not in header  # the caller's dict is not modified

    c, d = socket.socketpair()
    with c, d:
        feed(c, wire)
        got_header, got = recv_frame(d)
    assert {k: v for k, v in got_header.items() if k != "tensors"} == header
    assert list(got) == list(tensors)
    for name, tensor in tensors.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name
        assert got[name].is_contiguous()


def test_many_frames_on_one_connection(pair):
    a, b = pair
    def send_all():
        for i in range(20):
            send_frame(a, {"i": i}, {"x": torch.full((i,), float(i))})
        send_frame(a, {"last": True})
    thread = threading.Thread(target=send_all)
    thread.start()
    for i in range(20):
        header, tensors = recv_frame(b)
        assert header["i"] == i and torch.equal(tensors["x"], torch.full((i,), float(i)))
    header, tensors = recv_frame(b)
    assert header["last"] is True and tensors == {} and header["tensors"] == []
    thread.join()


def test_large_tensor_round_trip(pair):
    a, b = pair
    x = torch.randn(64, 56, 56)  # 802,816 bytes: many recv calls into one buffer
    thread = threading.Thread(target=send_frame, args=(a, {}, {"x": x}))
    thread.start()
    _, got = recv_frame(b)
    thread.join()
    assert torch.equal(got["x"], x)


def test_golden_frame(pair):
    a, b = pair
    sent = send_frame(a, {"type": "infer"}, {"x": torch.tensor([1.0, -2.0])})
    a.shutdown(socket.SHUT_WR)
    golden = (
        b"\x00\x00\x00\x00\x00\x00\x00\x53"  # L = 83 = 4 + 71 + 8
        b"\x00\x00\x00\x47"  # H = 71
        b'{"type":"infer","tensors":[{"name":"x","dtype":"float32","shape":[2]}]}'
        b"\x00\x00\x80\x3f"  # 1.0, float32 little-endian
        b"\x00\x00\x00\xc0"  # -2.0
    )
    assert read_all(b) == golden and sent == len(golden) == 91


def test_restores_socket_timeout(pair):
    a, b = pair
    b.settimeout(7.0)
    send_frame(a, {"x": 1})
    recv_frame(b)
    assert b.gettimeout() == 7.0


def test_dtype_helpers():
    assert set(DTYPES) == {"float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"}
    assert dtype_name(torch.bfloat16) == "bfloat16"
    assert tensor_nbytes("float32", [1, 3, 224, 224]) == 602112
    assert tensor_nbytes("bool", []) == 1
    with pytest.raises(ProtocolError) as info:
        dtype_name(torch.complex64)
    assert info.value.code == "bad_tensor"


def test_send_refuses_unknown_dtype(pair):
    a, _ = pair
    with pytest.raises(ProtocolError) as info:
        send_frame(a, {}, {"z": torch.zeros(2, dtype=torch.complex64)})
    assert info.value.code == "bad_tensor"


# --- refusals, before any allocation ---------------------------------------------------------

def test_refuses_huge_length(pair, no_tensor_alloc):
    expect_refusal(pair, struct.pack(">Q", 2**63), "frame_too_large")


def test_refuses_length_over_max(pair, no_tensor_alloc):
    frame = raw_frame({"tensors": []}, body_len=1001)
    expect_refusal(pair, frame, "frame_too_large", max_frame_bytes=1000)


@pytest.mark.parametrize("body_len", [0, 3])
def test_refuses_length_under_4(pair, no_tensor_alloc, body_len):
    expect_refusal(pair, struct.pack(">Q", body_len) + b"\x00" * 3, "bad_header")


def test_refuses_header_longer_than_body(pair, no_tensor_alloc):
    frame = raw_frame({"tensors": []}, body_len=20, header_len=17)
    expect_refusal(pair, frame, "bad_header")


def test_refuses_header_over_1mib(pair, no_tensor_alloc):
    expect_refusal(pair, struct.pack(">QI", 2**21, 2**20 + 1), "bad_header")


@pytest.mark.parametrize("header_bytes", [b"not json", b"\xff\xfe{}", b'{"tensors": [', b"[" * 100_000])
def test_refuses_non_json_header(pair, no_tensor_alloc, header_bytes):
    expect_refusal(pair, raw_frame(header_bytes), "bad_header")


@pytest.mark.parametrize("header", [[1, 2], "infer", 3, None])
def test_refuses_json_not_object(pair, no_tensor_alloc, header):
    expect_refusal(pair, raw_frame(header), "bad_header")


def test_refuses_missing_tensor_list(pair, no_tensor_alloc):
    expect_refusal(pair, raw_frame({"type": "infer"}), "bad_header")


@pytest.mark.parametrize("entry,payload", [
    ({"name": "x", "dtype": "complex64", "shape": [1]}, b"\x00" * 8),  # unknown dtype
    ({"name": "x", "dtype": "object", "shape": [1]}, b"\x00" * 8),
    ({"name": "x", "dtype": "float32", "shape": [-1]}, b""),  # negative dim
    ({"name": "x", "dtype": "float32", "shape": [2, -2]}, b""),
    ({"name": "x", "dtype": "float32", "shape": [1.0]}, b"\x00" * 4),  # non-int dim
    ({"name": "x", "dtype": "float32", "shape": [True]}, b"\x00" * 4),
    ({"name": "x", "dtype": "float32", "shape": "2"}, b"\x00" * 8),
    ({"name": "x", "dtype": "uint8", "shape": [1] * 9}, b"\x00"),  # too many dims
    ({"name": 5, "dtype": "uint8", "shape": [1]}, b"\x00"),
    ({"name": "x", "dtype": "float32", "shape": [2**40, 2**40]}, b"\x00" * 16),  # huge, small frame
    ({"name": "x", "dtype": "float32", "shape": [2**64, 2**64, 0]}, b""),  # empty, but dims overflow int64
    ({"name": "x", "dtype": "float32", "shape": [2**62, 2, 0]}, b""),
    ({"name": "x", "dtype": "float32", "shape": [3]}, b"\x00" * 8),  # sizes don't add up
    ({"name": "x", "dtype": "float32", "shape": [1]}, b"\x00" * 8),
])
def test_refuses_bad_tensor_entries(pair, no_tensor_alloc, entry, payload):
    expect_refusal(pair, raw_frame({"tensors": [entry]}, payload), "bad_tensor")


def test_refuses_duplicate_tensor_names(pair, no_tensor_alloc):
    entry = {"name": "x", "dtype": "uint8", "shape": [1]}
    expect_refusal(pair, raw_frame({"tensors": [entry, entry]}, b"\x00\x00"), "bad_tensor")


def test_refuses_sizes_not_adding_up_across_tensors(pair, no_tensor_alloc):
    entries = [{"name": "a", "dtype": "int64", "shape": [2]}, {"name": "b", "dtype": "bool", "shape": [3]}]
    expect_refusal(pair, raw_frame({"tensors": entries}, b"\x00" * 18), "bad_tensor")


class MakesMarker:
    """A pickle that creates a file when unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_pickle_payload_is_never_unpickled(tmp_path, no_tensor_alloc):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MakesMarker(proof)))
    assert proof.exists()  # the payload is live: unpickling it would create the file

    marker = tmp_path / "marker"
    evil = pickle.dumps(MakesMarker(marker))
    for frame in (raw_frame(evil), struct.pack(">Q", len(evil)) + evil):  # as the header, as the body
        a, b = socket.socketpair()
        with a, b:
            expect_refusal((a, b), frame, "bad_header")
    assert not marker.exists()


# --- closes and timeouts ------------------------------------------------------------------------

def test_clean_close_before_frame(pair):
    a, b = pair
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        recv_frame(b)
    assert info.value.code == "closed"


@pytest.mark.parametrize("cut", [3, 10, 40, 89])  # in the prefix, header length, header, tensor bytes
def test_truncated_frame(pair, cut):
    a, b = pair
    frame = raw_frame({"tensors": [{"name": "x", "dtype": "float32", "shape": [4]}]}, b"\x01" * 16)
    assert cut < len(frame)
    feed(a, frame[:cut], close=True)
    with pytest.raises(ProtocolError) as info:
        recv_frame(b)
    assert not isinstance(info.value, ConnectionClosed) and info.value.code == "truncated"


def test_idle_timeout(pair):
    _, b = pair
    t0 = time.monotonic()
    with pytest.raises(ProtocolError) as info:
        recv_frame(b, idle_timeout_s=0.1)
    assert info.value.code == "idle_timeout" and time.monotonic() - t0 < 0.5


def test_stalled_header_times_out(pair):
    a, b = pair
    a.sendall(struct.pack(">Q", 100)[:3])
    t0 = time.monotonic()
    with pytest.raises(ProtocolError) as info:
        recv_frame(b, header_timeout_s=0.2)
    elapsed = time.monotonic() - t0
    assert info.value.code == "timeout" and 0.15 < elapsed < 0.6


def trickle(sock, data: bytes, chunk: int, interval_s: float) -> threading.Thread:
    def run():
        try:
            for i in range(0, len(data), chunk):
                sock.sendall(data[i:i + chunk])
                time.sleep(interval_s)
        except OSError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_slow_body_times_out(pair):
    a, b = pair
    header = {"tensors": [{"name": "x", "dtype": "uint8", "shape": [1000]}]}
    head = raw_frame(header, b"\x00" * 1000)[:-1000]
    a.sendall(head)
    trickle(a, b"\x00" * 1000, chunk=1, interval_s=0.02)  # 50 B/s, far below 10,000 B/s
    t0 = time.monotonic()
    with pytest.raises(ProtocolError) as info:
        recv_frame(b, header_timeout_s=0.1, min_rate_bps=10_000, rate_window_s=0.2)  # 2,000 B per window
    elapsed = time.monotonic() - t0
    assert info.value.code == "timeout" and 0.15 < elapsed < 0.6


def test_huge_declared_body_trickled_is_dropped_within_a_window_or_two(pair):
    """The rate is judged over windows, not as one deadline stretched by the declared size (a
    60 MiB body at 8,000 B/s would have been allowed 2.2 hours)."""
    a, b = pair
    n = 60 * 2**20
    header = json.dumps({"tensors": [{"name": "x", "dtype": "uint8", "shape": [n]}]}).encode()
    a.sendall(raw_frame(header, body_len=4 + len(header) + n))  # the header, then no body
    trickle(a, b"\x00" * 100, chunk=1, interval_s=0.5)  # 2 B/s
    outcome = []

    def receive():
        try:
            recv_frame(b, header_timeout_s=0.5, min_rate_bps=1_000, rate_window_s=0.3)
        except ProtocolError as e:
            outcome.append(e.code)

    thread = threading.Thread(target=receive, daemon=True)
    t0 = time.monotonic()
    thread.start()
    thread.join(5)
    assert outcome == ["timeout"] and time.monotonic() - t0 < 2


def test_slow_but_steady_body_over_many_windows_is_accepted(pair):
    a, b = pair
    payload = bytes(range(256)) * 100  # 25,600 bytes at ~32,000 B/s: about 8 windows of 0.1 s
    frame = raw_frame({"tensors": [{"name": "x", "dtype": "uint8", "shape": [len(payload)]}]}, payload)
    trickle(a, frame, chunk=640, interval_s=0.02)
    _, tensors = recv_frame(b, header_timeout_s=0.5, min_rate_bps=10_000, rate_window_s=0.1)
    assert tensors["x"].numpy().tobytes() == payload


def test_body_above_min_rate_is_accepted(pair):
    a, b = pair
    payload = bytes(range(256)) * 8
    frame = raw_frame({"tensors": [{"name": "x", "dtype": "uint8", "shape": [2048]}]}, payload)
    trickle(a, frame, chunk=512, interval_s=0.02)  # ~25,000 B/s; deadline 0.1 + 2048/10,000 s
    _, tensors = recv_frame(b, header_timeout_s=0.1, min_rate_bps=10_000)
    assert tensors["x"].numpy().tobytes() == payload


def test_validate_runs_before_body_is_read(pair, no_tensor_alloc):
    a, b = pair
    payload = b"\x07" * 12
    a.sendall(raw_frame({"model": "nope", "tensors": [{"name": "x", "dtype": "int32", "shape": [3]}]}, payload))
    seen = []

    def validate(header):
        seen.append(header)
        raise ProtocolError("unknown_model", f"no model {header['model']!r}")

    with pytest.raises(ProtocolError) as info:
        recv_frame(b, validate=validate)
    assert info.value.code == "unknown_model"
    assert seen[0]["tensors"] == [{"name": "x", "dtype": "int32", "shape": [3]}]
    b.settimeout(1.0)
    assert b.recv(100) == payload  # the body is still unread: the caller must close the connection


def test_receive_buffer_is_reused_and_aligned_for_every_dtype():
    from net.wire.protocol import ReceiveBuffer
    buffer = ReceiveBuffer()
    first = {"a": torch.arange(3, dtype=torch.uint8), "b": torch.randn(5, 7, dtype=torch.float64),
             "c": torch.tensor([True, False]), "d": torch.randn(4, dtype=torch.bfloat16),
             "e": torch.empty(0, 3), "f": torch.tensor(7, dtype=torch.int32)}
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, {"n": 1}, first)
        _, got = recv_frame(right, buffer=buffer)
        for name, tensor in first.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor)
        storage = got["b"].untyped_storage().data_ptr()
        second = {"x": torch.randn(2, 3)}
        send_frame(left, {"n": 2}, second)
        _, again = recv_frame(right, buffer=buffer)
        assert torch.equal(again["x"], second["x"])
        assert again["x"].untyped_storage().data_ptr() == storage  # the same memory, reused
