"""The online path through real sockets: cloud server, edge client, edge runner, scripts."""
import json
import socket
import threading
import time

import pytest
import torch

from net.cloud.monitor import MonitorServer
from net.cloud.server import CloudServer
from net.edge.bandwidth import measure, measure_bandwidth_mbps
from net.edge.client import CloudClient, CloudRefused, CloudUnavailable
from net.edge.runner import collaborative_inference
from net.emulation.link import LinkPacer
from net.emulation.slowdown import emulate_slowdown, slowdown_clock
from net.wire.protocol import PROTOCOL_VERSION, recv_frame, send_frame
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from utils.classes import top_k

JSON_KEYS = {"model", "cut_point", "num_units", "cut_layer", "bandwidth_mbps", "rtt_ms",
             "transfer_bytes", "predicted_ms", "measured_ms", "top5", "fallback"}


@pytest.fixture(scope="module")
def predictors():
    return LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")


def planner_for(model, predictors, slowdown=1.0):
    return ChainPlanner(model, *predictors, edge_slowdown=slowdown)


@torch.no_grad()
def run_units(units, x: torch.Tensor, slowdown: float = 1.0) -> torch.Tensor:
    """Run `units` in order as an emulated edge F times slower than this machine: the runner's
    clock before the part, the emulated wait after the whole of it."""
    started = slowdown_clock()
    for unit in units:
        x = unit(x)
    emulate_slowdown(started, slowdown)
    return x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["le_net", "alex_net", "mobile_net"])
def test_every_cut_through_sockets_equals_local_inference(cloud_server, chain_models, image_batch, name):
    model = chain_models[name]
    with torch.no_grad():
        whole = model(image_batch.clone())
    with CloudClient(*cloud_server.address) as client:  # one connection, many requests
        for k in range(len(model)):
            edge, _ = (model[:k], None)
            with torch.no_grad():
                sent = edge(image_batch.clone())
            reply = client.infer(name, model.fingerprint, k, sent, want_logits=True)
            assert torch.equal(reply.logits, whole), f"{name}: cut {k} differs from local inference"
            assert reply.top5 == top_k(whole)
            assert reply.cloud_ms > 0 and reply.transfer_bytes > sent.numel() * 4


def test_runner_end_to_end_and_the_ends_of_the_range(cloud_server, chain_models, image_batch, predictors):
    model = chain_models["alex_net"]
    planner = planner_for(model, predictors)
    with torch.no_grad():
        expected = top_k(model(image_batch.clone()))
    with CloudClient(*cloud_server.address) as client:
        at_zero = collaborative_inference(model, planner, image_batch, client, Link(10.0), partition=model.prefix(0))
        assert at_zero.transfer_bytes > 3 * 224 * 224 * 4  # k = 0 sends the input itself
        chosen = collaborative_inference(model, planner, image_batch, client, Link(10.0))
        assert chosen.cut_point == planner.best_cut_point(Link(10.0))
        for report in (at_zero, chosen):
            assert report.top5 == expected and not report.fallback
    # k = N runs everything on the edge and opens no connection: nothing listens on this port
    nowhere = CloudClient("127.0.0.1", free_port())
    all_edge = collaborative_inference(model, planner, image_batch, nowhere, Link(10.0),
                                       partition=model.prefix(len(model)))
    assert (all_edge.fallback, all_edge.transfer_bytes, all_edge.top5) == (False, 0, expected)
    assert all_edge.measured_ms.transfer == 0 and all_edge.predicted_ms.transfer == 0


def test_cloud_lost_mid_run_falls_back_locally(chain_models, image_batch, predictors):
    model = chain_models["le_net"]
    with torch.no_grad():
        expected = top_k(model(image_batch.clone()))
    server = CloudServer("127.0.0.1", 0).start()
    client = CloudClient(*server.address)
    client.connect()
    server.stop()  # the cloud goes away after the edge connected
    report = collaborative_inference(model, planner_for(model, predictors), image_batch, client, Link(10.0),
                                     partition=model.prefix(3))
    assert report.fallback and "127.0.0.1" in report.fallback_reason
    assert report.top5 == expected and report.cut_point == 3


def test_weights_mismatch_is_refused_saying_who_holds_what(cloud_server, chain_models):
    model = chain_models["le_net"]
    with CloudClient(*cloud_server.address) as client:
        with pytest.raises(CloudRefused) as e:
            client.infer("le_net", "0123456789abcdef", 0, torch.zeros(1, 3, 224, 224))
    assert e.value.code == "weights_mismatch"
    assert "0123456789abcdef" in str(e.value) and model.fingerprint in str(e.value)


@pytest.mark.parametrize("header, code", [
    ({"type": "hello", "version": PROTOCOL_VERSION + 1}, "version_mismatch"),
    ({"type": "hello", "version": PROTOCOL_VERSION, "model": "le_net", "fingerprint": "x"}, "weights_mismatch"),
    ({"type": "infer", "model": "res_netz", "cut": 0, "fingerprint": ""}, "unknown_model"),
    ({"type": "teleport"}, "bad_request"),
])
def test_refusals_get_an_error_reply_and_the_server_keeps_serving(cloud_server, chain_models, header, code):
    with socket.create_connection(cloud_server.address, timeout=10) as sock:
        send_frame(sock, header)
        reply, _ = recv_frame(sock)
    assert reply["type"] == "error" and reply["code"] == code
    model = chain_models["le_net"]
    with CloudClient(*cloud_server.address) as client:  # a well-behaved edge is still served
        assert client.infer("le_net", model.fingerprint, 12, torch.ones(1, 84)).top5


def test_wrong_cut_and_shape_are_refused_before_the_body(cloud_server, chain_models):
    model = chain_models["le_net"]
    with CloudClient(*cloud_server.address) as client:
        with pytest.raises(CloudRefused, match="outside 0..12"):
            client.infer("le_net", model.fingerprint, 13, torch.zeros(1, 10))
        with pytest.raises(CloudRefused, match=r"float32 \[1, 84\], got"):  # names the shape it takes
            client.infer("le_net", model.fingerprint, 12, torch.zeros(1, 85))


def test_oversized_frame_is_refused(chain_models):
    model = chain_models["le_net"]
    with CloudServer("127.0.0.1", 0, max_frame_bytes=100_000).start() as server:
        with CloudClient(*server.address) as client:
            with pytest.raises(CloudUnavailable, match="frame_too_large"):
                client.infer("le_net", model.fingerprint, 0, torch.zeros(1, 3, 224, 224))


def test_concurrent_edges_each_get_their_own_answers(cloud_server, chain_models):
    model = chain_models["le_net"]
    inputs = [torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        expected = [model(x.clone()) for x in inputs]
    failures = []

    def edge(i):
        with CloudClient(*cloud_server.address) as client:
            for _ in range(5):
                reply = client.infer("le_net", model.fingerprint, 0, inputs[i], want_logits=True)
                if not torch.equal(reply.logits, expected[i]):
                    failures.append(i)

    threads = [threading.Thread(target=edge, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures


def test_paced_transfer_matches_bytes_over_rate_plus_rtt(cloud_server, chain_models, image_batch, predictors):
    model = chain_models["alex_net"]
    bandwidth_mbps, rtt_ms, k = 20.0, 30.0, 3
    with CloudClient(*cloud_server.address, pacer=LinkPacer(bandwidth_mbps), rtt_ms=rtt_ms) as client:
        report = collaborative_inference(model, planner_for(model, predictors), image_batch, client,
                                         Link(bandwidth_mbps, rtt_ms), partition=model.prefix(k))
    ideal_ms = report.transfer_bytes * 8 / (bandwidth_mbps * 1e3) + rtt_ms
    assert report.transfer_bytes == 186_624 + 154 or report.transfer_bytes > 186_624
    assert 0.95 * ideal_ms <= report.measured_ms.transfer <= 2 * ideal_ms + 50
    assert report.predicted_ms.transfer == pytest.approx(186_624 * 8 / 20e3 + rtt_ms)


def test_edge_slowdown_waits_after_the_units_and_scales_predictions(monkeypatch, chain_models, predictors):
    model = chain_models["le_net"]
    torch.set_num_threads(1)  # as the edge runs: torch computes in this thread
    waits = []
    monkeypatch.setattr("net.emulation.slowdown.time.sleep", waits.append)
    for cpu_s, expected_wait in [(0.5, 1.5), (0.1, 0.0)]:
        wall, cpu = iter([10.0, 10.5, 10.5]), iter([3.0, 3.0 + cpu_s])  # 0.5 s of wall time
        monkeypatch.setattr("net.emulation.slowdown.time.perf_counter", lambda wall=wall: next(wall))
        monkeypatch.setattr("net.emulation.slowdown.time.thread_time", lambda cpu=cpu: next(cpu))
        out = run_units(model, torch.zeros(1, 3, 224, 224), slowdown=4.0)
        # F x the CPU time from the start: 4 x 0.5 s computing; 4 x 0.1 s computing is over
        # before the 0.5 s the part took (it waited for a core), so no wait at all
        assert waits.pop() == pytest.approx(expected_wait)
    with torch.no_grad():
        assert torch.equal(out, model(torch.zeros(1, 3, 224, 224)))
    plain, slow = planner_for(model, predictors), planner_for(model, predictors, slowdown=4.0)
    assert slow.edge_prefix_ms[-1] == pytest.approx(4 * plain.edge_prefix_ms[-1])
    assert slow.cloud_suffix_ms == plain.cloud_suffix_ms


def test_edge_slowdown_stretches_computing_not_waiting_for_a_core(monkeypatch):
    """Real clocks: a part that spends its wall time off the CPU (asleep here, as when other
    edges hold the core) is not stretched F times; one that computes is."""
    torch.set_num_threads(1)
    real_sleep, waits = time.sleep, []

    class Idle(torch.nn.Module):
        def forward(self, x):
            real_sleep(0.05)  # (time.sleep itself is patched below: the same module object)
            return x

    class Busy(torch.nn.Module):
        def forward(self, x):
            end = time.thread_time() + 0.02
            while time.thread_time() < end:
                pass
            return x

    x = torch.ones(4)
    monkeypatch.setattr("net.emulation.slowdown.time.sleep", waits.append)  # the emulation's wait, recorded
    assert torch.equal(run_units([Idle()], x, slowdown=10.0), x)
    assert waits == [0.0]  # 50 ms asleep, ~0 CPU: nothing to add (the wall-time rule: 9 x 50 ms)
    monkeypatch.setattr("net.emulation.slowdown.time.sleep", real_sleep)
    t0 = time.perf_counter()
    run_units([Busy()], x, slowdown=5.0)
    assert time.perf_counter() - t0 >= 5 * 0.02 * 0.95  # at least 5 x its CPU time


@pytest.mark.parametrize("rate_mbps", [2.0, 20.0])
def test_monitor_measures_the_paced_link(rate_mbps):
    with MonitorServer("127.0.0.1", 0).start() as server:
        measured = measure(*server.address, pacer=LinkPacer(rate_mbps), rtt_ms=10)
    assert 0.75 * rate_mbps <= measured <= 1.1 * rate_mbps


def test_probes_time_the_link_while_tasks_upload_through_it(cloud_server):
    # The tracker probes from its own thread while tasks upload through the same emulated uplink.
    # Interleaved chunk by chunk, a probe timed the task's frame too: right after a Wi-Fi -> 3G
    # step a trace run read 86 Mbit/s, then 0.65, for a 1.1 Mbit/s link.
    pacer, stop = LinkPacer(4.0), threading.Event()

    def tasks():
        with CloudClient(*cloud_server.address, pacer=pacer) as client:
            while not stop.is_set():  # a task's request: a 0.2 s upload, as of a tensor
                client._request({"type": "probe"}, {"data": torch.zeros(100_000, dtype=torch.uint8)})
                time.sleep(0.02)  # the edge's next computation

    uploader = threading.Thread(target=tasks, daemon=True)
    uploader.start()
    try:
        time.sleep(0.1)  # mid-upload
        with CloudClient(*cloud_server.address, pacer=pacer) as client:
            measured = [measure_bandwidth_mbps(client) for _ in range(3)]
    finally:
        stop.set()
        uploader.join(10)
    assert all(0.75 * 4.0 <= m <= 1.1 * 4.0 for m in measured), measured


def test_probe_times_that_disagree_give_a_lower_bound_not_a_huge_rate():
    class Client:  # both small probes took longer than the large one (cross traffic)
        def __init__(self):
            self.times_ms = iter([50.0, 40.0, 60.0])
            self.sent = []

        def probe(self, nbytes):
            self.sent.append(nbytes)
            return next(self.times_ms)

    client = Client()
    mbps = measure_bandwidth_mbps(client)  # type: ignore[arg-type]
    assert mbps == pytest.approx(client.sent[1] * 8 / 40e3)  # the large probe's bytes over its time


def test_cloud_answers_probes_on_its_main_port(cloud_server):
    with CloudClient(*cloud_server.address) as client:
        assert measure_bandwidth_mbps(client) > 100  # unshaped loopback


# --- the scripts, in-process (argument handling, reports) -------------------------------------

def run_edge(capsys, *argv):
    from net.apps.edge import main
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_edge_api_json_report(capsys, cloud_server, china_jpg):
    host, port = cloud_server.address
    code, out, _ = run_edge(capsys, "-i", host, "-p", str(port), "-t", "le_net", "--bandwidth", "wifi",
                            "--rtt", "5", "--image", str(china_jpg), "--partition", "4", "--json")
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert JSON_KEYS <= set(report)
    assert (report["cut_point"], report["num_units"], report["bandwidth_mbps"]) == (4, 13, 18.88)
    assert set(report["predicted_ms"]) == set(report["measured_ms"]) == {"edge", "transfer", "cloud", "total"}
    assert len(report["top5"]) == 5 and report["fallback"] is False
    assert "measured" in out and "predicted" in out


def test_edge_api_unreachable_cloud_falls_back(capsys):
    port = free_port()
    code, out, err = run_edge(capsys, "-p", str(port), "-t", "le_net", "--json")
    assert code == 0 and f"127.0.0.1:{port}" in err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["fallback"] is True and report["cut_point"] == report["num_units"]
    code, _, err = run_edge(capsys, "-p", str(port), "-t", "le_net", "--no-fallback")
    assert code == 1 and f"127.0.0.1:{port}" in err


@pytest.mark.parametrize("argv, message", [
    (["-t", "res_netz"], "invalid choice"),
    (["-t", "le_net", "--image", "/nonexistent/cat.jpg"], "image not found"),
    (["-t", "le_net", "--partition", "14"], "outside 0..13"),
    (["-t", "le_net", "-d", "cuda"], "cuda"),
    (["-t", "le_net", "--bandwidth", "5g"], "3g"),
])
def test_edge_api_bad_input_is_one_clear_line(capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        run_edge(capsys, *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cloud_api_port_in_use_and_cuda_are_one_line():
    from net.apps.cloud import main
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(SystemExit, match="cannot listen on 127.0.0.1"):
            main(["-p", str(busy.getsockname()[1])])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no usable CUDA"):
            main(["-d", "cuda", "-p", "0"])


@pytest.mark.slow
def test_imagenet_names_with_imagenet_shaped_weights(capsys, tmp_path, chain_models):
    from models import build_reference
    path = tmp_path / "alexnet.pth"
    torch.save(build_reference("alex_net").state_dict(), path)
    with CloudServer("127.0.0.1", 0, weights={"alex_net": path}).start() as server:
        host, port = server.address
        code, out, _ = run_edge(capsys, "-i", host, "-p", str(port), "-t", "alex_net", "--weights",
                                str(path), "--bandwidth", "1000", "--partition", "16")
    assert code == 0 and "class" in out
    from utils.classes import imagenet_categories
    top1 = int(out.split("top-5:")[1].split()[1])
    assert imagenet_categories()[top1] in out


def test_speedtest_offline_says_it_needs_internet(capsys, monkeypatch):
    import speedtest

    class Offline:  # stands in for speedtest.Speedtest: tests never leave loopback
        def __init__(self, *a, **k):
            raise speedtest.ConfigRetrievalError("no network")

    monkeypatch.setattr(speedtest, "Speedtest", Offline)
    with pytest.raises(SystemExit) as e:
        run_edge(capsys, "-t", "le_net", "--bandwidth", "speedtest")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "needs internet access" in err and "Traceback" not in err


def test_handshake_refuses_other_weights_naming_both(capsys, cloud_server, tmp_path, chain_models):
    from models import build_reference
    reference = build_reference("le_net")
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(1.0)
    path = tmp_path / "other.pth"
    torch.save(reference.state_dict(), path)
    with pytest.raises(CloudRefused) as e:
        CloudClient(*cloud_server.address, weights=("le_net", "feedfacefeedface")).connect()
    assert e.value.code == "weights_mismatch" and "feedfacefeedface" in str(e.value)
    host, port = cloud_server.address
    code, _, err = run_edge(capsys, "-i", host, "-p", str(port), "-t", "le_net", "--weights", str(path),
                            "--bandwidth", "10")
    assert code == 1 and "weights_mismatch" in err and chain_models["le_net"].fingerprint in err


def test_slowdown_by_repeating_does_the_work_f_times_and_waits_the_fraction(monkeypatch):
    from net.emulation.slowdown import run_slowed
    calls, waits = [], []
    monkeypatch.setattr("net.emulation.slowdown.time.sleep", waits.append)
    assert run_slowed(lambda: calls.append(1) or len(calls), 3.0, by_repeating=True) == 1  # the first run's result
    assert len(calls) == 3 and waits == [0.0]
    calls.clear()
    waits.clear()
    clock = iter([0.0, 0.0, 10.0, 12.0, 0.0, 0.0, 0.0])  # the repeat (10 -> 12) took 2 s
    monkeypatch.setattr("net.emulation.slowdown.time.perf_counter", lambda: next(clock))
    monkeypatch.setattr("net.emulation.slowdown.time.thread_time", lambda: 0.0)
    run_slowed(lambda: calls.append(1), 2.5, by_repeating=True)
    assert len(calls) == 2 and waits == [pytest.approx(0.5 * 2.0)]  # half a run more: half the last run's time
    calls.clear()
    run_slowed(lambda: calls.append(1), 1.0, by_repeating=True)
    assert len(calls) == 1


def test_the_runner_repeats_the_edge_part_when_asked_and_answers_the_same(chain_models, predictors):
    model = chain_models["le_net"]
    x = torch.zeros(1, 3, 224, 224)
    planner = planner_for(model, predictors, slowdown=3.0)
    ran = []
    real = model.run_edge
    model.run_edge = lambda x, partition: ran.append(partition.cut_point) or real(x, partition)  # type: ignore[method-assign]
    try:
        once = collaborative_inference(model, planner, x, None, None, edge_slowdown=3.0, unavailable="test")
        assert ran == [model.num_units]
        ran.clear()
        thrice = collaborative_inference(model, planner, x, None, None, edge_slowdown=3.0, unavailable="test",
                                         slowdown_by_repeating=True)
        assert ran == [model.num_units] * 3
    finally:
        del model.run_edge
    assert once.top5 == thrice.top5
