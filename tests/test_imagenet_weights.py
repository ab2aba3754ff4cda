"""--weights imagenet: torchvision's weights through torch's own cache; offline, one line that names
the file to place and the folder. Nothing downloads here (conftest sets NEUROSURGEON_OFFLINE=1):
the cache is a temporary TORCH_HOME, pre-filled with seeded weights under torchvision's file name."""
import subprocess
import sys
import time

import pytest
import torch
from torchvision.models import AlexNet_Weights, googlenet

from models import get_dnn_model, get_model, preprocessing
from models import weights as model_weights
from models.weights import WeightsUnavailable, imagenet_cache_file
from utils.provenance import REPO_ROOT


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(model_weights.OFFLINE_ENV, "1")
    return tmp_path / "torch"


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def cached_alex_net(empty_torch_home, chain_models):
    """The seeded AlexNet's weights saved where torchvision keeps its ImageNet file."""
    path = imagenet_cache_file("alex_net")
    assert path.parent == empty_torch_home / "hub" / "checkpoints"
    assert path.name == AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    from models import build_reference
    torch.save(build_reference("alex_net").state_dict(), path)
    return path


def test_offline_without_the_file_is_one_line_naming_file_and_folder(empty_torch_home, no_download):
    with pytest.raises(WeightsUnavailable) as e:
        get_dnn_model("mobile_net", "imagenet")
    message = str(e.value)
    assert "\n" not in message
    assert "mobilenet_v2-b0353104.pth" in message and str(empty_torch_home / "hub" / "checkpoints") in message


def test_models_without_torchvision_weights_say_so(no_download):
    for name in ("le_net", "fashion_net", "efficient_net"):
        with pytest.raises(WeightsUnavailable, match="no torchvision ImageNet weights"):
            get_model(name, "imagenet")


def test_the_cached_file_is_loaded_and_never_downloaded(cached_alex_net, chain_models, no_download):
    model = get_dnn_model("alex_net", "imagenet")
    assert model.fingerprint == chain_models["alex_net"].fingerprint  # the seeded weights we saved


def test_imagenet_weights_bring_their_own_transforms():
    assert repr(preprocessing("alex_net", "imagenet")) == repr(AlexNet_Weights.IMAGENET1K_V1.transforms())
    assert model_weights.categories("alex_net", "imagenet")[0] == "tench"
    assert model_weights.categories("alex_net") is None  # seeded weights: no class names


@pytest.mark.slow
def test_google_net_loads_torchvisions_file_with_its_auxiliary_heads(empty_torch_home, no_download):
    """torchvision's GoogLeNet file holds the training-only aux classifiers; we drop them, and its
    transform_input re-normalisation moves into the preprocessing (mean 0.5, std 0.5)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        full = googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=True).eval()
    path = imagenet_cache_file("google_net")
    path.parent.mkdir(parents=True)
    torch.save(full.state_dict(), path)
    model = get_model("google_net", "imagenet")
    from PIL import Image
    photo = Image.new("RGB", (256, 256), (10, 200, 90))
    x_ours = preprocessing("google_net", "imagenet")(photo).unsqueeze(0)
    x_tv = preprocessing("alex_net", "imagenet")(photo).unsqueeze(0)  # torchvision's ImageNet normalisation
    with torch.no_grad():
        torch.testing.assert_close(model(x_ours), full(x_tv), rtol=1e-4, atol=1e-5)


def test_edge_api_offline_fails_in_one_line_within_seconds(empty_torch_home):
    started = time.monotonic()
    out = subprocess.run([sys.executable, "edge_api.py", "-t", "vgg_net", "--weights", "imagenet", "--partition", "0"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "vgg16_bn-6c64b313.pth" in out.stderr and str(empty_torch_home / "hub" / "checkpoints") in out.stderr


def test_cloud_api_offline_fails_in_one_line(empty_torch_home):
    from net.apps.cloud import main
    with pytest.raises(SystemExit) as e:
        main(["-p", "0", "--weights", "res_net=imagenet"])
    assert "resnet18-f37072fd.pth" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_edge_api_imagenet_through_a_local_cloud_names_classes(cached_alex_net):
    out = subprocess.run([sys.executable, "edge_api.py", "-t", "alex_net", "--weights", "imagenet", "--local-cloud",
                          "--bandwidth", "wifi", "--partition", "5", "--image", "china.jpg", "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "fallback\": false" in out.stdout
    categories = AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    import json
    top5 = json.loads(out.stdout.strip().splitlines()[-1])["top5"]
    assert f"  {categories[top5[0][0]]}" in out.stdout  # real weights' class names are printed
