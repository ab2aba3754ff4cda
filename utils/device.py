"""Device selection: `-d cpu|cuda`, refused clearly where CUDA does not exist."""
import torch

DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("-d cuda was asked for, but this machine has no usable CUDA GPU "
                          "(torch.cuda.is_available() is False); use -d cpu")
    return torch.device(name)
