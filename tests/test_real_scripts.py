"""The real answers as a user sees them: the README's demo names a real class, fashion_net and
efficient_net run through the scripts, and the accuracy benchmark's split answers equal local."""
import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from utils import fashion_mnist
from utils.provenance import REPO_ROOT

PY = sys.executable
needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist.available(),
                                         reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def run(*argv, timeout=240, cwd=REPO_ROOT):
    return subprocess.run([PY, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_readme_demo_names_a_palace(tmp_path):
    """From a folder without china.jpg: the name resolves to scikit-learn's sample photo."""
    out = run(str(REPO_ROOT / "edge_api.py"), "-t", "efficient_net", "--local-cloud", "--bandwidth", "wifi",
              "--edge-slowdown", "10", "--image", "china.jpg", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # the plan is the planner's (at Wi-Fi with this slow an edge: the image file itself, exact); the
    # answer is the palace either way, and the cloud answered
    assert report["fallback"] is False and report["num_units"] == 26 and report["lossy"] is False
    assert report["top5"][0][0] == 698 and "palace" in out.stdout.split("top-5:")[1].splitlines()[1]


@needs_fashion_mnist
@pytest.mark.slow
def test_fashion_net_through_edge_api_and_a_local_cloud(tmp_path):
    images, labels = fashion_mnist.load("test")
    path = tmp_path / "item.png"
    Image.fromarray(images[0]).save(path)
    out = run("edge_api.py", "-t", "fashion_net", "--local-cloud", "--bandwidth", "3g", "--partition", "8",
              "--image", str(path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["cut_point"] == 8 and report["fallback"] is False
    assert report["top5"][0][0] == int(labels[0])
    assert f"  {fashion_mnist.CLASSES[int(labels[0])]}" in out.stdout


@pytest.mark.slow
def test_tasks_mix_models_of_different_input_shapes():
    out = run("tasks_edge_api.py", "--local-cloud", "--tasks", "fashion_net,efficient_net,fashion_net",
              "--bandwidth", "lte", "--interval", "30", "--image", "flower.jpg")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("fashion_net") >= 2 and "FALLBACK" not in out.stdout


def test_bad_image_is_one_line():
    out = run("edge_api.py", "-t", "fashion_net", "--image", "no-such-photo.jpg", "--partition", "17")
    assert out.returncode == 2 and out.stderr.strip() == "error: image not found: no-such-photo.jpg"


@needs_fashion_mnist
def test_accuracy_benchmark_checks_split_answers(tmp_path):
    from benchmarks import accuracy
    out_csv = tmp_path / "accuracy.csv"
    rows = accuracy.main(["--limit", "200", "--cuts", "0", "8", "--photo-cuts", "9", "--out", str(out_csv)])
    fashion_rows = [r for r in rows if r["model"] == "fashion_net"]
    assert [r["cut_point"] for r in fashion_rows] == [0, 8]
    assert all(r["split_equals_local"] == "200/200" and r["top1_accuracy"] > 0.8 for r in fashion_rows)
    assert fashion_rows[0]["top1_accuracy"] == fashion_rows[1]["top1_accuracy"]  # exact at every cut
    photos = {r["data"]: r["top1_class"] for r in rows if r["model"] == "efficient_net"}
    assert photos == {"china.jpg": "palace", "flower.jpg": "daisy"}
    with open(out_csv) as f:
        lines = [line for line in f if not line.startswith("#")]
    assert len(list(csv.DictReader(lines))) == 4


@needs_fashion_mnist
def test_accuracy_benchmark_transform_hook(tmp_path):
    from benchmarks import accuracy
    rows = accuracy.main(["--limit", "50", "--cuts", "4", "--photo-cuts", "4", "--transform",
                          "benchmarks.accuracy:fp16_roundtrip", "--out", str(tmp_path / "a.csv")])
    assert all(r["transform"] == "benchmarks.accuracy:fp16_roundtrip" for r in rows)
    assert rows[0]["split_equals_local"] == "50/50"  # against local inference of the same fp16 tensor
    with pytest.raises(SystemExit):
        accuracy.main(["--transform", "nowhere:nothing", "--out", str(tmp_path / "b.csv")])
