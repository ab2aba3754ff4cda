"""One-line descriptions of the errors a user's own files cause (a weights file that does not
load), for the scripts to print instead of a traceback."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

# What loading a weights file can raise: torch.load's refusals and load_state_dict's mismatches.
WEIGHTS_ERRORS = (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError)

_KEYS = re.compile(r'(Missing|Unexpected) key\(s\) in state_dict: (.*)')
_SIZE = re.compile(r'size mismatch for ([^:]+):')
_UNSAFE = re.compile(r'(Unsupported[^\n]*|Trying to load unsupported[^\n]*|invalid load key[^\n]*)')


def _few(keys: list[str], shown: int = 3) -> str:
    more = f", ... {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def weights_error_line(error: BaseException, path: str | Path, model: str) -> str:
    """Why `path` does not load into `model`, in one line: the keys that do not fit (a few,
    counted), or that the file is not a plain state dict of tensors (it is refused unread, so
    it cannot run code; the advice torch gives to load it anyway is not repeated)."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in text:
        return _not_tensors_line(text, path, model)
    if "Error(s) in loading state_dict" in text:
        parts = []
        for kind, keys in _KEYS.findall(text):
            names = re.findall(r'"([^"]+)"', keys)
            parts.append(f"{len(names)} {'missing' if kind == 'Missing' else 'unexpected'} key(s) ({_few(names)})")
        sizes = _SIZE.findall(text)
        if sizes:
            parts.append(f"{len(sizes)} of another shape ({_few(sizes)})")
        return f"{path} does not fit {model}: {'; '.join(parts) or text.splitlines()[0]}; is it {model}'s state dict?"
    if isinstance(error, EOFError):
        return f"cannot load {path} into {model}: the file is empty or cut short"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot load {path} into {model}: {type(error).__name__}: {first[:300]}"


def unreadable_weights_line(error: BaseException, path: str | Path, model: str) -> str:
    """Why torch's tensors-only loader could not read `path`, in one line: unreadable or cut short,
    or else not a plain state dict of tensors, whatever the restricted unpickler raised (on random
    bytes it fails with IndexError, KeyError or UnicodeDecodeError about one time in ten, not
    only with UnpicklingError)."""
    if isinstance(error, (OSError, EOFError)):
        return weights_error_line(error, path, model)
    return _not_tensors_line(str(error), path, model)


def _not_tensors_line(text: str, path: str | Path, model: str) -> str:
    detail = _UNSAFE.search(text)
    why = f" ({detail.group(1).strip().rstrip('.')})" if detail else ""
    return (f"cannot load {path} into {model}: it is not a plain state dict of tensors{why}; "
            "files that hold anything else are refused, never run")
