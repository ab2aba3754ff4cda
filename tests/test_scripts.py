"""The scripts as a user runs them: real processes, real sockets on loopback."""
import json
import re
import signal
import subprocess
import sys

import pytest
import torch

from models import get_dnn_model
from utils.classes import top_k
from utils.image import load_image
from utils.provenance import REPO_ROOT

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each

PY = sys.executable


def run(*argv, timeout=120):
    return subprocess.run([PY, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def assert_same_top5(got, expected):
    """Across processes (other thread counts) top-5 indices are identical, scores within 1e-5."""
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        assert a == pytest.approx(b, rel=1e-5)


@pytest.fixture
def cloud_process():
    proc = subprocess.Popen([PY, "cloud_api.py", "-p", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.match(r"cloud serving on 127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read()
        yield proc, int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_two_terminals_then_sigterm(cloud_process, china_jpg):
    proc, port = cloud_process
    out = run("edge_api.py", "-i", "127.0.0.1", "-p", str(port), "-d", "cpu", "-t", "le_net",
              "--bandwidth", "lte", "--image", str(china_jpg), "--partition", "3", "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert report["cut_point"] == 3 and report["fallback"] is False and report["lossy"] is False
    assert report["codec"] in ("none", "zstd")  # auto at budget 0: exact codecs only
    assert report["transfer_bytes"] > report["coded_bytes"] == (290_400 if report["codec"] == "none" else report["coded_bytes"])
    with torch.no_grad():
        expected = top_k(get_dnn_model("le_net")(load_image(china_jpg)))
    assert_same_top5(report["top5"], expected)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "cloud stopped" in proc.stdout.read()


def test_local_cloud_demo_on_a_real_photo(china_jpg):
    out = run("edge_api.py", "-t", "alex_net", "--local-cloud", "--bandwidth", "wifi", "--partition", "5",
              "--image", str(china_jpg), "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert report["fallback"] is False and report["measured_ms"]["cloud"] > 0
    with torch.no_grad():
        expected = top_k(get_dnn_model("alex_net")(load_image(china_jpg)))
    assert_same_top5(report["top5"], expected)
    assert "cut after unit 5 of 22" in out.stdout


def test_monitor_test_prints_the_measured_rate():
    out = run("-m", "net.apps.monitor_test", "--bandwidth", "8", "--rounds", "1")
    assert out.returncode == 0, out.stderr
    rate = float(re.search(r"measured uplink ([\d.]+) Mbit/s", out.stdout).group(1))
    assert 6 <= rate <= 8.8


@pytest.mark.parametrize("script", ["edge_api.py", "cloud_api.py"])
def test_help_keeps_the_original_short_flags(script):
    out = run(script, "--help")
    assert out.returncode == 0
    for flag in ("-i IP", "-p PORT", "-d {cpu,cuda}"):
        assert flag in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model, bandwidth, codec", [("alex_net", "3g", "auto"), ("mobile_net", "wifi", "auto"),
                                                     ("le_net", "lte", "zstd")])
def test_codecs_through_a_real_cloud_process_answer_as_local_inference(china_jpg, model, bandwidth, codec):
    out = run("edge_api.py", "-t", model, "--local-cloud", "--bandwidth", bandwidth, "--edge-slowdown", "10",
              "--image", str(china_jpg), "--codec", codec, "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert report["fallback"] is False and report["lossy"] is False
    assert report["codec"] in (("none", "zstd", "pixels", "file") if codec == "auto" else (codec, "none"))
    with torch.no_grad():
        expected = top_k(get_dnn_model(model)(load_image(china_jpg)))
    assert_same_top5(report["top5"], expected)


@pytest.mark.parametrize("argv, message", [
    (["--codec", "jpeg90"], "give --image"),
    (["--codec", "gzip"], "invalid choice"),
    (["--accuracy-budget", "-1"], "accuracy budget"),
])
def test_bad_codec_flags_get_one_line(argv, message):
    out = run("edge_api.py", "-t", "le_net", "--bandwidth", "10", *argv, timeout=60)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
