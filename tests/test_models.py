import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from models import MODEL_NAMES, UnknownModelError, build_reference, get_dnn_model, model_partition
from models.efficientnet import MBConv
from utils.provenance import REPO_ROOT


def test_registry_names():
    assert MODEL_NAMES == ("alex_net", "vgg_net", "le_net", "mobile_net", "efficient_net", "fashion_net")


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as e:
        get_dnn_model("res_netz")
    for name in MODEL_NAMES:
        assert name in str(e.value)


@pytest.mark.parametrize("name, num_units", [("alex_net", 22), ("vgg_net", 53), ("le_net", 13),
                                             ("mobile_net", 27), ("efficient_net", 26), ("fashion_net", 17)])
def test_chain_shape(chain_models, name, num_units):
    model = chain_models[name]
    assert len(model) == num_units == len(model.unit_names)
    assert list(model) == [model[i] for i in range(num_units)]
    assert not model.training
    for unit in model:  # a unit is a leaf layer, or one block with a skip connection
        assert isinstance(unit, (InvertedResidual, MBConv)) or not list(unit.children())


def test_mobilenet_blocks_are_single_units(chain_models):
    blocks = [u for u in chain_models["mobile_net"] if isinstance(u, InvertedResidual)]
    assert len(blocks) == 17
    assert sum(b.use_res_connect for b in blocks) == 10


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_cut_is_exact(chain_models, image_batch, name):
    model = chain_models[name]
    image_batch = batch_for(model, image_batch)
    with torch.no_grad():
        whole = model(image_batch.clone())
        for k in range(len(model) + 1):
            edge, cloud = model_partition(model, k)
            assert len(edge) == k and len(cloud) == len(model) - k
            out = cloud(edge(image_batch.clone()))
            assert torch.equal(out, whole), f"{name} cut at {k} differs from the whole model"


def batch_for(model, image_batch):
    """The session's 1x3x224x224 batch, or a seeded one of the model's own input shape."""
    if tuple(image_batch.shape) == model.input_shape:
        return image_batch
    return torch.randn(model.input_shape, generator=torch.Generator().manual_seed(1234))


def test_partition_refuses_out_of_range(chain_models):
    model = chain_models["le_net"]
    for k in (-1, len(model) + 1):
        with pytest.raises(ValueError, match=r"0\.\.13"):
            model_partition(model, k)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_chain_equals_reference_with_loaded_state_dict(tmp_path, image_batch, name):
    """A torchvision state dict (other weights than the default) loads into the chain and gives
    the reference architecture's output."""
    reference = build_reference(name)
    image_batch = batch_for(get_dnn_model(name), image_batch)
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(0.9).add_(0.01)
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    reference.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    chain = get_dnn_model(name, weights=path)
    assert chain.fingerprint != get_dnn_model(name).fingerprint
    with torch.no_grad():
        torch.testing.assert_close(chain(image_batch.clone()), reference(image_batch.clone()),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fingerprint_is_deterministic_across_processes(chain_models):
    code = "from models import get_dnn_model; print(get_dnn_model('le_net').fingerprint)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == chain_models["le_net"].fingerprint
    assert len(chain_models["le_net"].fingerprint) == 16
    fingerprints = {m.fingerprint for m in chain_models.values()}
    assert len(fingerprints) == len(MODEL_NAMES)


def test_default_weights_leave_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    get_dnn_model("le_net")
    assert torch.equal(torch.rand(3), expected)


def test_unit_labels(chain_models):
    model = chain_models["alex_net"]
    assert model.unit_label(0) == "input"
    assert model.unit_label(1) == "Conv2d (features.0)"
    assert model.unit_label(len(model)) == "Linear (classifier.6)"
