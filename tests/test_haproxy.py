"""Several cloud processes behind a real HAProxy (deploy/haproxy.cfg) on loopback."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from utils.classes import top_k
from utils.provenance import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy is not installed (apt-get install haproxy; .ci/run does)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cloud() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "cloud_api.py", "-p", "0", "--preload", "le_net"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r":(\d+) ", line)
    assert match, line
    return proc, int(match.group(1))


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def served(port: int) -> int:
    with CloudClient("127.0.0.1", port) as client:
        return client.stats()["served"]


@pytest.fixture
def cluster():
    """Two clouds and HAProxy in front of them; everything stopped at the end, on every path."""
    procs = []
    try:
        clouds = [start_cloud() for _ in range(2)]
        procs += [p for p, _ in clouds]
        front = free_port()
        env = dict(os.environ, NS_LISTEN=f"127.0.0.1:{front}", NS_CLOUD1=f"127.0.0.1:{clouds[0][1]}",
                   NS_CLOUD2=f"127.0.0.1:{clouds[1][1]}")
        haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(REPO_ROOT / "deploy" / "haproxy.cfg")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(haproxy)

        def front_answers():
            try:
                with CloudClient("127.0.0.1", front, connect_timeout_s=1) as client:
                    client.stats()
                return True
            except Exception:
                return False

        wait_until(front_answers, 15, "HAProxy to accept and forward")
        time.sleep(1.5)  # both backends pass their health checks (rise 2 x 500 ms)
        yield front, clouds
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()


def edge_worker(front, model, planner, inputs, results, cuts, stop=None, max_rounds=1):
    """Requests at each cut for each input, `max_rounds` times or until `stop` is set."""
    client = CloudClient("127.0.0.1", front)
    try:
        for _ in range(max_rounds):
            for k in cuts:
                for i, x in enumerate(inputs):
                    if stop is not None and stop.is_set():
                        return
                    report = collaborative_inference(model, planner, x, client, Link(100.0),
                                                     partition=model.prefix(k))
                    results.append((k, i, report))
    finally:
        client.close()


def check_answers(results, expected):
    for k, i, report in results:
        assert [c for c, _ in report.top5] == [c for c, _ in expected[i]], (k, i)
        for (_, a), (_, b) in zip(report.top5, expected[i]):
            assert a == pytest.approx(b, rel=1e-5)


def test_eight_edges_through_the_balancer_reach_both_backends(cluster, chain_models):
    front, clouds = cluster
    model = chain_models["le_net"]
    planner = ChainPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"))
    inputs = [torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(50 + i)) for i in range(2)]
    with torch.no_grad():
        expected = [top_k(model(x.clone())) for x in inputs]
    results = []
    threads = [threading.Thread(target=edge_worker, args=(front, model, planner, inputs, results, [0, 4, 9]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 8 * 3 * 2  # nothing lost
    assert not any(r.fallback for _, _, r in results)
    check_answers(results, expected)
    counts = [served(port) for _, port in clouds]
    assert all(c > 0 for c in counts) and sum(counts) == len(results)  # both backends served


def test_a_backend_killed_mid_run(cluster, chain_models):
    front, clouds = cluster
    model = chain_models["le_net"]
    planner = ChainPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"))
    inputs = [torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(70))]
    with torch.no_grad():
        expected = [top_k(model(inputs[0].clone()))]
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=edge_worker, args=(front, model, planner, inputs, results, [0, 4, 9],
                                                          stop, 10_000)) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) >= 20, 60, "requests before the kill")
    victim, _ = clouds[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = len(results)
    time.sleep(2)  # the balancer's health check takes the dead backend out
    after = len(results)
    wait_until(lambda: len(results) >= after + 20, 60, "requests after the kill")
    stop.set()
    for t in threads:
        t.join(120)
    check_answers(results, expected)  # every request answered right: by a cloud, or locally
    late = [r for _, _, r in results[after:]]
    assert late and not any(r.fallback for r in late)  # the dead backend gets no new connections
    # the edges whose connections went to the dead backend sent their request again (through the
    # balancer, to the live one) or finished locally, and their reports say so
    interrupted = [r for _, _, r in results[killed_at - 4:after] if r.fallback or r.retries]
    assert interrupted
    assert all(t.is_alive() is False for t in threads)  # no edge died of an exception


def test_balancer_benchmark_smoke(tmp_path):
    from benchmarks import balancer
    rows = balancer.main(["--clients", "2", "--requests", "2", "--model", "le_net", "--out", str(tmp_path / "b.csv")])
    assert [r["setup"] for r in rows] == ["direct, 1 cloud", "haproxy, 1 backend", "haproxy, 2 backends"]
    assert all(r["errors"] == 0 and r["wrong"] == 0 for r in rows)
