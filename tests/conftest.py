"""Shared fixtures. Tests that compare with torch.equal fix the thread count: PyTorch's CPU
kernels may differ in the last bits between thread counts."""
import os

import pytest
import torch

from models import MODEL_NAMES, get_dnn_model

TEST_THREADS = 2
# Nothing downloads in tests: `--weights imagenet` without the file in torch's cache fails at once
# (here and in every subprocess a test starts, which inherits the environment).
os.environ["NEUROSURGEON_OFFLINE"] = "1"


@pytest.fixture(autouse=True, scope="session")
def shipped_predictors_only(tmp_path_factory):
    """Tests predict with the shipped predictors, never with a profile this machine made
    (deployment.py writes those to runs/profile, which LatencyPredictor.load prefers)."""
    import os

    from predictor.regression import PROFILE_ENV
    saved = os.environ.get(PROFILE_ENV)
    os.environ[PROFILE_ENV] = str(tmp_path_factory.mktemp("no_profile"))
    yield
    if saved is None:
        os.environ.pop(PROFILE_ENV, None)
    else:
        os.environ[PROFILE_ENV] = saved


@pytest.fixture(autouse=True)
def fixed_threads():
    """Every test starts at TEST_THREADS (the edge scripts set 1 thread for their process)."""
    torch.set_num_threads(TEST_THREADS)
    yield


@pytest.fixture(scope="session")
def chain_models():
    """Every model built once for the whole session (VGG16-BN takes seconds to build)."""
    return {name: get_dnn_model(name) for name in MODEL_NAMES}


@pytest.fixture(scope="session")
def image_batch():
    g = torch.Generator().manual_seed(1234)
    return torch.randn((1, 3, 224, 224), generator=g)


@pytest.fixture(scope="session")
def cloud_server():
    """One cloud on a free loopback port for the session, stopped at the end."""
    from net.cloud.server import CloudServer
    server = CloudServer("127.0.0.1", 0, max_frame_bytes=16 * 2**20).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def china_jpg(tmp_path_factory):
    """A real photo: the one that ships with scikit-learn, saved as a JPEG file."""
    from PIL import Image
    from sklearn.datasets import load_sample_image
    path = tmp_path_factory.mktemp("images") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path)
    return path
