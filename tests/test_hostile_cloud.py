"""A hostile cloud: a real socket server on 127.0.0.1 that answers the hello properly and then
misbehaves. Whatever it does, the edge must neither hang nor crash: a bad reply is a failed
request (sent once more, then the edge finishes locally), and what the cloud says is printed
cut and escaped."""
import json
import socket
import struct
import threading
import time

import pytest
import torch

from net.edge.client import CloudClient, CloudUnavailable
from net.edge.runner import collaborative_inference
from net.wire.protocol import PROTOCOL_VERSION, recv_frame, send_frame
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from utils.classes import top_k


class EvilCloud:
    """Accepts connections; answers hello; then `behave(conn, header)` for every other request.
    behave=None at hello: stay silent from the start."""

    def __init__(self, behave, silent_at_hello: bool = False):
        self.behave, self.silent_at_hello = behave, silent_at_hello
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.requests = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn):
        try:
            hello, _ = recv_frame(conn)
            if self.silent_at_hello:
                self._stop.wait(30)
                return
            send_frame(conn, {"type": "hello", "version": PROTOCOL_VERSION, "models": []})
            while not self._stop.is_set():
                header, _ = recv_frame(conn)
                self.requests += 1
                self.behave(conn, header)
        except Exception:
            pass

    def close(self):
        self._stop.set()
        self.listener.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_reply(conn, header_bytes: bytes, payload: bytes = b"", body_len: int | None = None):
    body = 4 + len(header_bytes) + len(payload) if body_len is None else body_len
    conn.sendall(struct.pack(">QI", body, len(header_bytes)) + header_bytes + payload)


def silent(conn, header):
    time.sleep(30)


@pytest.fixture(scope="module")
def le_net(chain_models):
    model = chain_models["le_net"]
    planner = ChainPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"))
    return model, planner


def infer_against(cloud, le_net, x, timeout_s=10.0, **kwargs):
    model, planner = le_net
    client = CloudClient(*cloud.address, timeout_s=timeout_s, num_classes={model.name: model.num_classes})
    try:
        t0 = time.monotonic()
        report = collaborative_inference(model, planner, x, client, Link(100.0), partition=model.prefix(9), **kwargs)
        return report, time.monotonic() - t0
    finally:
        client.close()


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))


def expected_top5(le_net, x):
    with torch.no_grad():
        return top_k(le_net[0](x.clone()))


def test_a_cloud_silent_at_hello_costs_the_edge_its_timeout_only():
    with EvilCloud(None, silent_at_hello=True) as cloud:
        client = CloudClient(*cloud.address, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(CloudUnavailable, match="handshake"):
            client.connect()
        assert time.monotonic() - t0 < 3


def test_a_cloud_silent_at_infer_costs_two_timeouts_then_the_edge_falls_back(le_net, x):
    with EvilCloud(silent) as cloud:
        report, elapsed = infer_against(cloud, le_net, x, timeout_s=0.5)
    assert report.fallback and report.retries == 1 and "did not answer within" in report.fallback_reason
    assert report.top5 == expected_top5(le_net, x)
    assert elapsed < 5  # two tries of 0.5 s (+ the upload allowance of 1 KB), not 2 x 120 s


def test_a_reply_declaring_60_mib_is_refused_from_its_header(le_net, x):
    def huge(conn, header):
        h = json.dumps({"type": "result", "top5": [[1, 0.5]], "cloud_ms": 1.0,
                        "tensors": [{"name": "logits", "dtype": "float32", "shape": [1, 15 * 2**20]}]}).encode()
        raw_reply(conn, h, body_len=4 + len(h) + 60 * 2**20)  # ... and then nothing

    with EvilCloud(huge) as cloud:
        report, elapsed = infer_against(cloud, le_net, x, timeout_s=30.0, want_logits=True)
    assert report.fallback and elapsed < 5  # refused at once, not after the 30 s timeout
    assert report.top5 == expected_top5(le_net, x)


GOOD = {"type": "result", "top5": [[3, 0.5], [1, 0.2]], "cloud_ms": 1.0}


@pytest.mark.parametrize("reply", [
    {k: v for k, v in GOOD.items() if k != "cloud_ms"},                 # cloud_ms missing
    {**GOOD, "cloud_ms": "fast"},
    {**GOOD, "cloud_ms": -1.0},
    {**GOOD, "cloud_ms": 1e9},                                          # longer than the request
    {**GOOD, "top5": []},
    {**GOOD, "top5": "cat"},
    {**GOOD, "top5": [[3]]},
    {**GOOD, "top5": [[True, 0.5]]},
    {**GOOD, "top5": [[99, 0.5]]},                                      # le_net has 10 classes
    {**GOOD, "top5": [[3, 1.5]]},
    {**GOOD, "tensors": [{"name": "logits", "dtype": ["float32"], "shape": [1, 10]}]},  # unhashable
    {**GOOD, "tensors": [{"name": "logits", "dtype": {"x": 1}, "shape": [1, 10]}]},
    {**GOOD, "tensors": [{"name": "junk", "dtype": "float32", "shape": [1, 10]}]},
    {**GOOD, "type": ["result"]},
    {**GOOD, "decode_ms": "slow"},                                      # the codecs' field, as hostile
    {**GOOD, "decode_ms": -1.0},
    {**GOOD, "decode_ms": 1e9},                                         # longer than the request
    {**GOOD, "decode_ms": float("inf")},
], ids=lambda r: json.dumps(r)[:60])
def test_a_malformed_result_is_a_failed_request_never_a_crash(le_net, x, reply):
    def bad(conn, header):
        tensors = reply.get("tensors", [])
        payload = b"\0" * 40 if tensors else b""
        raw_reply(conn, json.dumps({**reply, "tensors": tensors}).encode(), payload)

    with EvilCloud(bad) as cloud:
        report, _ = infer_against(cloud, le_net, x)
        assert cloud.requests == 2  # sent once more on a new connection, then the edge finished it
    assert report.fallback and report.retries == 1
    assert report.top5 == expected_top5(le_net, x)


@pytest.mark.parametrize("nan_field", ["score", "cloud_ms", "logits"])
def test_nan_from_the_cloud_is_refused_and_the_json_stays_valid(le_net, x, nan_field):
    def nan(conn, header):
        h = {"type": "result", "top5": [[3, float("nan") if nan_field == "score" else 0.5]],
             "cloud_ms": float("nan") if nan_field == "cloud_ms" else 1.0, "tensors": []}
        payload = b""
        if nan_field == "logits":
            h["tensors"] = [{"name": "logits", "dtype": "float32", "shape": [1, 10]}]
            payload = torch.full((10,), float("nan")).numpy().tobytes()
        raw_reply(conn, json.dumps(h).encode(), payload)  # json.dumps writes NaN, as a careless peer would

    with EvilCloud(nan) as cloud:
        report, _ = infer_against(cloud, le_net, x, want_logits=True)
    assert report.fallback
    json.loads(json.dumps(report.to_json_dict()), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


@pytest.mark.parametrize("code", ["busy", "bad_cut"])
def test_what_the_cloud_says_is_cut_and_escaped_before_it_is_printed(le_net, x, code):
    message = "\x1b[2J\x1b[31mpwned\r\n" + "A" * 60_000  # a terminal escape, then a flood

    def chatty(conn, header):
        send_frame(conn, {"type": "error", "code": code, "message": message})

    with EvilCloud(chatty) as cloud:
        if code == "busy":  # unavailable: the edge falls back and reports why
            report, _ = infer_against(cloud, le_net, x)
            text = report.fallback_reason
        else:  # a refusal: an error the user reads
            from net.edge.client import CloudRefused
            with pytest.raises(CloudRefused) as info:
                infer_against(cloud, le_net, x)
            text = str(info.value)
    assert "\x1b" not in text and "\r" not in text and "\n" not in text
    assert len(text) < 600 and "more characters" in text


@pytest.mark.slow
def test_edge_api_against_a_silent_cloud_falls_back_after_its_timeout():
    import subprocess
    import sys

    from utils.provenance import REPO_ROOT
    with EvilCloud(silent) as cloud:
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "edge_api.py", "-p", str(cloud.address[1]), "-t", "le_net",
                              "--bandwidth", "100", "--partition", "9", "--timeout", "1", "--json"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - t0
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and report["fallback"] and report["retries"] == 1
    assert "did not answer within the 1 s timeout" in report["fallback_reason"]
    assert elapsed < 60  # start-up and two tries of ~1 s, not two of 120 s
