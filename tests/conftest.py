"""Shared fixtures. Tests that compare with torch.equal fix the thread count: PyTorch's CPU
kernels may differ in the last bits between thread counts."""
import pytest
import torch

from models import MODEL_NAMES, get_dnn_model

TEST_THREADS = 2


@pytest.fixture(scope="session", autouse=True)
def fixed_threads():
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def chain_models():
    """Every model built once for the whole session (VGG16-BN takes seconds to build)."""
    return {name: get_dnn_model(name) for name in MODEL_NAMES}


@pytest.fixture(scope="session")
def image_batch():
    g = torch.Generator().manual_seed(1234)
    return torch.randn((1, 3, 224, 224), generator=g)
