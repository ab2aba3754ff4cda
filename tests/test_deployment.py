import json

import pytest

import deployment
from utils.device import DeviceError, resolve_device


def test_show_json_is_one_object(capsys):
    assert deployment.main(["-t", "alex_net", "--bandwidth", "lte", "--rtt", "20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(doc) == {"model", "bandwidth_mbps", "rtt_ms", "objective", "best_cut", "best_latency_cut",
                        "best_energy_cut", "network", "power_mw", "cuts", "codecs",
                        "codecs_considered"}  # a preset names the network
    assert doc["model"] == "alex_net" and doc["bandwidth_mbps"] == 5.85 and doc["rtt_ms"] == 20
    assert [c["cut_point"] for c in doc["cuts"]] == list(range(23))
    assert set(doc["cuts"][0]) == {"cut_point", "layer", "edge_ms", "transfer_ms", "cloud_ms",
                                   "total_ms", "transfer_bytes", "energy_mj", "codec", "coded_bytes",
                                   "encode_ms", "decode_ms", "lossy"}
    best = min(doc["cuts"], key=lambda c: c["total_ms"])
    assert doc["best_cut"] == best["cut_point"]


def test_show_prints_a_table(capsys):
    deployment.main(["-t", "le_net", "--bandwidth", "3g", "--show"])
    out = capsys.readouterr().out
    assert "le_net at 1.1 Mbit/s" in out and "<- best" in out
    assert len(out.strip().splitlines()) == 2 + 14 + 2  # title, header, cuts 0..13, the codecs, the powers


@pytest.mark.parametrize("argv, message", [
    (["-t", "nope", "--bandwidth", "1", "--show"], "invalid choice"),
    (["-t", "le_net", "--bandwidth", "fast", "--show"], "3g"),
    (["-t", "le_net", "--show"], "--bandwidth"),
    ([], "--role"),
])
def test_bad_arguments_get_one_clear_line(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        deployment.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cuda_is_refused_clearly_without_a_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="no usable CUDA"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_show_and_json_for_a_dag_model(capsys):
    assert deployment.main(["-t", "res_net", "--bandwidth", "1000", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["model"] == "res_net" and doc["num_nodes"] == 69
    assert doc["total_ms"] == pytest.approx(doc["edge_ms"] + doc["transfer_ms"] + doc["cloud_ms"], abs=1e-3)
    assert doc["total_ms"] <= min(doc["edge_only_ms"], doc["cloud_only_ms"]) + 1e-6
    assert sum(c["bytes"] for c in doc["crossing"]) == doc["transfer_bytes"]
    deployment.main(["-t", "google_net", "--bandwidth", "3g", "--show"])
    out = capsys.readouterr().out
    assert "google_net at 1.1 Mbit/s" in out and "crossing:" in out and "on the edge:" in out
