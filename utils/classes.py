"""What a model's output means: top-k classes as probabilities, ImageNet class names."""
from __future__ import annotations

import torch

TOP_K = 5


def top_k(logits: torch.Tensor, k: int = TOP_K) -> list[list]:
    """[[class index, softmax probability], ...], best first, for a batch of one."""
    probabilities = torch.softmax(logits.reshape(-1).double(), dim=0)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return [[int(i), float(v)] for i, v in zip(indices, values)]


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names; torchvision ships them in its code, nothing is downloaded."""
    from torchvision.models import AlexNet_Weights
    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
