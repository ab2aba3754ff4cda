"""The models with real weights: efficient_net (EfficientNet-Lite0, ImageNet) and fashion_net
(Fashion-MNIST), their preprocessing, the data set's loader, and their split inference through a
real cloud socket."""
import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from models import categories, efficientnet, fashion, input_shape, model_input, model_partition, preprocessing
from models.efficientnet import MBConv
from net.edge.client import CloudClient
from predictor.ops import analyze
from utils import fashion_mnist
from utils.image import ImageError, load_image, resolve_image_path

needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist.available(),
                                         reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def efficient(chain_models):
    return chain_models["efficient_net"]


@pytest.fixture(scope="module")
def fashion_model(chain_models):
    return chain_models["fashion_net"]


@pytest.fixture(scope="module")
def fashion_test_images():
    if not fashion_mnist.available():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return fashion_mnist.load("test")


# -- efficient_net -----------------------------------------------------------------------------

def test_efficient_net_is_a_chain_of_mbconv_units(efficient):
    assert efficient.input_shape == (1, 3, 224, 224) and efficient.num_classes == 1000
    blocks = [u for u in efficient if isinstance(u, MBConv)]
    assert len(blocks) == 16  # every block one unit, skip or not
    assert sum(b.use_res_connect for b in blocks) == 9
    assert efficient.unit_label(4) == "MBConv (blocks.0)"


def test_efficient_net_has_mobilenet_v2_layer_kinds(efficient, chain_models):
    def kinds(model):
        return {op.kind for unit in analyze(model).units for op in unit.ops}
    assert kinds(efficient) == kinds(chain_models["mobile_net"])


def test_efficient_net_default_weights_are_the_wheels(efficient):
    state = torch.load(efficientnet.default_weights_file(), map_location="cpu", weights_only=True)
    ours = efficientnet.EfficientNetLite0()
    ours.load_state_dict(efficientnet.from_reference_state_dict(state))  # strict: every key renamed
    assert efficient.fingerprint == efficientnet.to_chain(ours).fingerprint


@pytest.mark.slow
def test_efficient_net_equals_the_2020_reference_on_the_sample_photos(efficient):
    """Our own code against the reference implementation (a test-only dependency)."""
    reference_impl = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="the reference implementation is a test-only dependency: "
                                            "pip install -r requirements-dev.txt")
    reference = reference_impl.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(efficientnet.default_weights_file(), map_location="cpu", weights_only=True))
    reference.eval()
    for photo, expected in (("china.jpg", "palace"), ("flower.jpg", "daisy")):
        x = model_input("efficient_net", None, photo)
        with torch.no_grad():
            ours, theirs = efficient(x.clone()), reference(x.clone())
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        assert categories("efficient_net")[int(ours.argmax())] == expected


def test_efficient_net_preprocessing_belongs_to_its_weights():
    photo = Image.new("RGB", (300, 400), (255, 0, 127))
    x = preprocessing("efficient_net")(photo)
    assert tuple(x.shape) == (3, 224, 224)
    expected = (torch.tensor([255, 0, 127]) / 255 - 0.498) / 0.502
    torch.testing.assert_close(x[:, 100, 100], expected)
    # the seeded torchvision models keep torchvision's ImageNet normalisation
    assert not torch.allclose(preprocessing("alex_net")(photo), x)


def test_sample_photo_names_resolve_to_scikit_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_image_path("china.jpg")
    assert path.is_file() and "sklearn" in str(path)
    (tmp_path / "china.jpg").write_bytes(b"not an image")  # a file of that name wins
    assert resolve_image_path("china.jpg").resolve() == (tmp_path / "china.jpg").resolve()
    with pytest.raises(ImageError, match="cannot read"):
        load_image("china.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_image("elsewhere/china.jpg")


# -- Fashion-MNIST and fashion_net --------------------------------------------------------------

def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_loader_reads_gzipped_or_plain_files(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]))
    got_images, got_labels = fashion_mnist.load("test", tmp_path)
    assert np.array_equal(got_images, images) and list(got_labels) == [7, 3]
    assert not fashion_mnist.available(tmp_path)  # the training files are missing
    with pytest.raises(fashion_mnist.DatasetMissing, match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
        fashion_mnist.load("train", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an idx file"):
        fashion_mnist.load("test", tmp_path)


@needs_fashion_mnist
def test_debian_fashion_mnist_has_its_60000_and_10000_images():
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = fashion_mnist.load(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert sorted(set(labels.tolist())) == list(range(10))


def test_fashion_net_is_a_small_cnn_with_its_own_input(fashion_model):
    assert fashion_model.input_shape == input_shape("fashion_net") == (1, 1, 28, 28)
    assert fashion_model.num_classes == 10 and len(fashion_model) == 17
    info = analyze(fashion_model)
    assert info.input_bytes == 28 * 28 * 4
    assert [info.cut_bytes(k) for k in (4, 8, 12)] == [16 * 14 * 14 * 4, 32 * 7 * 7 * 4, 64 * 3 * 3 * 4]
    assert categories("fashion_net")[9] == "Ankle boot"


def test_fashion_net_weights_ship_as_a_plain_state_dict_with_their_record(fashion_model):
    state = torch.load(fashion.WEIGHTS_FILE, map_location="cpu", weights_only=True)
    assert set(state) == set(fashion.reference().state_dict())
    assert fashion.WEIGHTS_FILE.stat().st_size < 1_000_000
    record = json.loads(fashion.WEIGHTS_FILE.with_suffix(".json").read_text())
    assert record["command"].startswith("python -m models.train_fashion_net")
    assert record["test_accuracy"] >= 0.90 and record["test_images"] == 10_000
    assert record["train_seconds"] < 600


def test_fashion_net_accuracy_on_the_test_set(fashion_model, fashion_test_images):
    images, labels = fashion_test_images
    with torch.no_grad():
        predicted = torch.cat([fashion_model(fashion.batch_from_uint8(images[i:i + 2000])).argmax(1)
                               for i in range(0, len(images), 2000)])
    accuracy = float((predicted == torch.from_numpy(labels.astype(np.int64))).float().mean())
    record = json.loads(fashion.WEIGHTS_FILE.with_suffix(".json").read_text())
    assert accuracy == pytest.approx(record["test_accuracy"], abs=0.002)


def test_a_fashion_image_file_is_prepared_as_in_training(fashion_test_images, tmp_path):
    images, _ = fashion_test_images
    path = tmp_path / "boot.png"
    Image.fromarray(images[0]).save(path)
    from_file = model_input("fashion_net", None, path)
    assert tuple(from_file.shape) == (1, 1, 28, 28)
    assert torch.equal(from_file, fashion.batch_from_uint8(images[:1]))


def test_fashion_net_split_through_a_real_cloud_equals_local(cloud_server, fashion_model, fashion_test_images):
    images, _ = fashion_test_images
    x = fashion.batch_from_uint8(images[:3])
    with CloudClient(*cloud_server.address, weights=("fashion_net", fashion_model.fingerprint)) as client:
        for i in range(len(x)):
            image = x[i:i + 1]
            with torch.no_grad():
                expected = fashion_model(image.clone())
            for cut in (0, 4, 8, 12, 13, 16):
                edge, _ = model_partition(fashion_model, cut)
                with torch.no_grad():
                    sent = edge(image.clone())
                reply = client.infer("fashion_net", fashion_model.fingerprint, cut, sent, want_logits=True)
                assert torch.equal(reply.logits, expected), f"cut {cut}"


def test_the_cloud_refuses_an_imagenet_sized_tensor_for_fashion_net(cloud_server, fashion_model):
    from net.edge.client import CloudRefused
    with CloudClient(*cloud_server.address) as client:
        with pytest.raises(CloudRefused, match=r"\[1, 1, 28, 28\]"):
            client.infer("fashion_net", fashion_model.fingerprint, 0, torch.zeros(1, 3, 224, 224))


@needs_fashion_mnist
@pytest.mark.slow
def test_training_is_seeded_and_reproducible():
    from models.train_fashion_net import train
    first, record = train(epochs=1, limit=512, log=lambda *_: None)
    second, _ = train(epochs=1, limit=512, log=lambda *_: None)
    assert record["train_images"] == 512
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_profiler_times_the_new_models_op_by_op(efficient, fashion_model):
    """The profiler's op-by-op pass reproduces both forwards (it checks), with their own input
    shapes, and finds only kinds the predictors have."""
    from predictor.features import FEATURES, FREE_KINDS
    from predictor.profiler import QUICK, CacheFlusher, profile_chains, workloads
    settings = QUICK.__class__(resolutions=(160, 224), mobilenet_widths=(), linear_sweep=False, warmup=0, repeats=1)
    rows = profile_chains([("efficient_net@224", efficient, (1, 3, 224, 224)),
                           ("fashion_net@28", fashion_model, (1, 1, 28, 28))], settings, CacheFlusher(2**20))
    assert {r["spec"]["kind"] for r in rows} <= set(FEATURES) - set(FREE_KINDS)
    sources = [source for source, _, _ in workloads(settings)]
    assert "fashion_net@28" in sources and "efficient_net@160" in sources and "fashion_net@160" not in sources


def test_a_file_that_is_no_state_dict_is_one_line(tmp_path):
    from models import WeightsUnavailable, get_dnn_model
    for content in (b"{}", b"\x00junk"):
        path = tmp_path / "w.pt"
        path.write_bytes(content)
        with pytest.raises(WeightsUnavailable, match="cannot load .* into fashion_net: it is not a plain state dict") as e:
            get_dnn_model("fashion_net", path)
        assert "\n" not in str(e.value)
