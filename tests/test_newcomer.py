"""What a newcomer hits: files that do not load, scripts' exit codes and messages. Each error is
one line, never a traceback."""
import re
import signal
import struct
import subprocess
import sys
import zlib

import pytest
import torch

from utils.provenance import REPO_ROOT

PY = sys.executable


def run(*argv, timeout=120):
    return subprocess.run([PY, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def png_declaring(path, width: int, height: int):
    """A small valid PNG whose header declares width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_20000_by_20000_png_is_a_one_line_image_error(tmp_path):
    from utils.image import ImageError, load_image
    with pytest.raises(ImageError, match="too large to decode") as info:
        load_image(png_declaring(tmp_path / "huge.png", 20000, 20000))
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    import os

    from models import get_dnn_model
    folder = tmp_path_factory.mktemp("weights")
    (folder / "random.bin").write_bytes(os.urandom(4096))

    class Code:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save(Code(), folder / "code.pt")
    torch.save(get_dnn_model("le_net").state_dict(), folder / "le_net.pt")
    return folder


@pytest.mark.parametrize("name, expected", [
    ("random.bin", "not a plain state dict of tensors"),
    ("code.pt", "not a plain state dict of tensors"),
    ("le_net.pt", r"does not fit alex_net: \d+ missing key\(s\) \(.*\); \d+ unexpected key\(s\)"),
])
def test_weights_that_do_not_load_are_described_in_one_line(bad_weights, name, expected):
    from models import get_dnn_model
    from utils.errors import WEIGHTS_ERRORS, weights_error_line
    with pytest.raises(WEIGHTS_ERRORS) as info:
        get_dnn_model("alex_net", bad_weights / name)
    line = weights_error_line(info.value, bad_weights / name, "alex_net")
    assert re.search(expected, line) and "\n" not in line
    assert "weights_only" not in line and "False" not in line  # never torch's advice to load it anyway


@pytest.mark.slow
@pytest.mark.parametrize("name", ["random.bin", "code.pt", "le_net.pt"])
def test_edge_api_with_bad_weights_exits_2_in_one_line(bad_weights, name):
    out = run("edge_api.py", "-t", "alex_net", "--weights", str(bad_weights / name), "--partition", "22")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "weights_only" not in out.stderr, out.stderr


@pytest.mark.slow
def test_cloud_api_with_weights_that_do_not_load_refuses_to_start(bad_weights):
    out = run("cloud_api.py", "-p", "0", "--weights", f"alex_net={bad_weights / 'random.bin'}", timeout=120)
    assert out.returncode != 0 and "serving" not in out.stdout and "Traceback" not in out.stderr
    assert "not a plain state dict" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.slow
def test_edge_api_with_a_decompression_bomb_exits_2_in_one_line(tmp_path):
    out = run("edge_api.py", "-t", "le_net", "--image", str(png_declaring(tmp_path / "huge.png", 20000, 20000)))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "too large" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_tasks_cloud_api_builds_the_models_before_it_says_it_serves():
    proc = subprocess.Popen([PY, "tasks_cloud_api.py", "-p", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        building = proc.stderr.readline()
        assert building.startswith("building alex_net, vgg_net, le_net, mobile_net, efficient_net, fashion_net "
                                   "before serving"), building
        assert proc.stdout.readline().startswith("cloud serving on")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.slow
def test_ctrl_c_of_tasks_edge_api_exits_130_after_its_summary():
    import socket
    with socket.socket() as s:  # a port where nothing listens: every task runs on the edge
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([PY, "tasks_edge_api.py", "-p", str(port), "--num-tasks", "10000", "--seed", "1",
                             "--timeout", "1"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("task "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "interrupted after" in err and "Traceback" not in err
        assert "model" in out  # the summary of the tasks done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_report_run_csv_writes_run_csv_not_run_csv_csv(tmp_path):
    from net.apps.tasks_edge import report_base
    assert report_base(tmp_path / "run.csv") == tmp_path / "run"
    assert report_base(tmp_path / "run") == tmp_path / "run"
    assert report_base(tmp_path / "run.XLS") == tmp_path / "run"
    assert report_base(tmp_path / "v1.2") == tmp_path / "v1.2"


def test_another_cpu_is_one_clean_line(monkeypatch, capsys):
    import warnings

    from predictor import LatencyPredictor, deploy
    monkeypatch.setattr(deploy, "cpu_model", lambda: "Some Other CPU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning (with its source line) is raised
        deploy.warn_if_other_machine(LatencyPredictor.load("edge"))
    err = capsys.readouterr().err
    assert err.startswith("warning: the shipped edge predictors were profiled on") and err.count("\n") == 1


def test_a_slow_upload_is_announced_before_it_starts(cloud_server, chain_models):
    from net.edge.client import CloudClient
    from net.emulation.link import LinkPacer

    class Announced(Exception):
        pass

    said = []

    def notify(text):
        said.append(text)
        raise Announced  # stop here: the announcement came before any byte of the tensor

    model = chain_models["le_net"]
    with CloudClient(*cloud_server.address, pacer=LinkPacer(0.01)) as client:
        client.notify = notify
        with pytest.raises(Announced):
            client.infer("le_net", model.fingerprint, 0, torch.zeros(1, 3, 224, 224))
    assert re.match(r"sending 602,112 bytes to the cloud at .* at 0.01 Mbit/s: about 482 s", said[0])


# --- shipped files stay shipped; CSVs stay plain ------------------------------------------------

SHIPPED_CSVS = sorted((REPO_ROOT / "benchmarks" / "results").glob("*.csv")) + \
    sorted((REPO_ROOT / "predictor" / "dataset").glob("*/*.csv"))


@pytest.mark.parametrize("path", SHIPPED_CSVS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_csvs_are_plain_with_provenance_beside_them(path):
    import csv
    import json

    from utils.provenance import provenance_path
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert not any(name.startswith("#") for name in reader.fieldnames), reader.fieldnames
        assert sum(1 for _ in reader) > 0
    assert "commit" in json.loads(provenance_path(path).read_text())


def test_benchmarks_write_fresh_results_outside_the_shipped_folder():
    import importlib

    from benchmarks import RESULTS_DIR, SHIPPED_RESULTS_DIR
    assert RESULTS_DIR != SHIPPED_RESULTS_DIR and RESULTS_DIR.relative_to(REPO_ROOT).parts[0] == "runs"
    assert "runs/" in (REPO_ROOT / ".gitignore").read_text().split()
    for name in ("balancer", "cloud_concurrency", "decision_quality", "decision_time", "load_aware_throughput",
                 "model_latency", "predictor_accuracy", "protocol_throughput"):
        assert importlib.import_module(f"benchmarks.{name}").RESULTS_DIR == RESULTS_DIR, name


@pytest.mark.slow
def test_deployment_profiles_into_this_machines_folder_and_the_scripts_then_use_it(tmp_path, monkeypatch, capsys):
    import hashlib

    import deployment
    from predictor import LatencyPredictor
    from predictor.regression import CONFIG_DIR, DATASET_DIR, PROFILE_ENV

    def digest():
        files = sorted(DATASET_DIR.glob("edge/*")) + sorted(CONFIG_DIR.glob("edge/*"))
        return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    before = digest()
    assert LatencyPredictor.load("edge").shipped  # no profile of this machine yet
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "mine"))
    assert deployment.main(["--role", "edge", "--quick"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "mine" / "config" / "edge") in out and "untouched" in out
    assert digest() == before  # the 19 shipped predictor files and the CSVs are as they were
    mine = LatencyPredictor.load("edge")
    assert not mine.shipped and mine.source == tmp_path / "mine" / "config" / "edge" / "predictors.json"
    assert mine.meta["quick"] is True and LatencyPredictor.load("cloud").shipped  # per role
    from predictor.deploy import warn_if_other_machine
    warn_if_other_machine(mine)
    assert "using this machine's edge predictors" in capsys.readouterr().err


def test_ctrl_c_leaves_a_flag_for_the_loop_when_its_interrupt_is_swallowed():
    import threading

    from net.apps.tasks_edge import on_ctrl_c
    interrupted = threading.Event()
    try:  # as when the KeyboardInterrupt lands in a __del__ and Python only prints it
        on_ctrl_c(interrupted)
    except KeyboardInterrupt:
        pass
    assert interrupted.is_set()
