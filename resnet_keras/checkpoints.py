"""Reads torchvision-style state dicts from `.pth`/`.pt` (torch.save) and `.safetensors` files.

The format is read from a file's first bytes; torch is imported only for a torch
file and loads with `weights_only=True`, so a checkpoint can never run code.
"""

import os
import pickle
import re
import struct
from collections.abc import Mapping

import numpy as np

from resnet_keras.weights import (
    CHECKPOINT_FORMATS,
    FORMATS,
    check_finite,
    file_format,
    format_mismatch,
)

# Keys that training frameworks wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# DataParallel/DistributedDataParallel and torch.compile prefix every key.
_KEY_PREFIXES = ("module.", "_orig_mod.")
# torch's weights-only unpickler refused an object, and (when it says) its class.
_UNPICKLER_REFUSAL = "WeightsUnpickler error"
_UNPICKLER_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def as_numpy(value):
    """A numpy array from a numpy array or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        # numpy has no bfloat16; float32 holds every torch float exactly.
        return value.float().numpy() if value.is_floating_point() else value.numpy()
    return np.asarray(value)


def _unwrap(obj, path):
    """The state dict inside a checkpoint: unwrapped, prefixes stripped, as numpy."""
    while isinstance(obj, Mapping):
        wrapper = next((k for k in _WRAPPER_KEYS
                        if k in obj and isinstance(obj[k], Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path} holds no state dict (found {type(obj).__name__}"
                         f"{' (empty)' if isinstance(obj, Mapping) else ''}). Save it with "
                         f"torch.save(model.state_dict(), path).")
    stored = {key: key for key in obj}  # key after stripping -> key in the file
    for prefix in _KEY_PREFIXES:
        if all(isinstance(k, str) and k.startswith(prefix) for k in stored):
            stored = {k[len(prefix):]: v for k, v in stored.items()}
    state_dict = {}
    for key, key_in_file in stored.items():
        value = obj[key_in_file]
        if not (hasattr(value, "detach") or isinstance(value, np.ndarray)):
            raise ValueError(
                f"{path} does not hold a plain state dict: entry {key_in_file!r} is a "
                f"{type(value).__name__}, not a tensor. Expected parameter names mapped to "
                f"tensors, possibly wrapped as {{'state_dict': ...}} or {{'model': ...}}.")
        state_dict[key] = as_numpy(value)
    check_finite(path, ((stored[key], array) for key, array in state_dict.items()))
    return state_dict


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"Reading {path} needs PyTorch, which is not installed. Install it with "
            f"`pip install torch==2.13.0` (CPU build), or convert the checkpoint to "
            f".safetensors elsewhere and pass that file.") from None
    try:
        # weights_only: a checkpoint is data; never run code pickled into it.
        # An open file, not the path: torch.load reads a path ending in
        # .safetensors as safetensors, while the content decided this is torch's.
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _UNPICKLER_REFUSAL not in str(e):
            raise ValueError(_unreadable_torch(path, e)) from None
        # torch's own message advises loading with weights_only=False, which
        # runs whatever the file holds: only the refused class is passed on.
        refused = _UNPICKLER_GLOBAL.search(str(e))
        what = f" ({refused.group(1)})" if refused else ", or was not written by torch.save"
        raise ValueError(f"{path} holds Python objects other than tensors{what}; refused: "
                         f"only tensors are loaded from a checkpoint.") from None
    # A truncated legacy (pickle) checkpoint fails inside the unpickler with any of these.
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError,
            struct.error) as e:
        raise ValueError(_unreadable_torch(path, e)) from None


def _unreadable_torch(path, error):
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines and "weights_only" not in lines[0] else "unreadable"
    return (f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {reason}. Download it again.")


def _read_safetensors(path):
    # safetensors.numpy never imports torch, so .safetensors works without it.
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or "
                         f"corrupt?): {e}. Write it again.") from None


def read_state_dict(path) -> dict:
    """Reads a torchvision-style state dict from a safetensors or torch.save file.

    The format is read from the file's first bytes, whatever its suffix.
    safetensors is read with `safetensors.numpy` and needs no PyTorch; the
    torch formats import torch on demand and load with `weights_only=True`.
    Checkpoints that wrap the state dict (`{"state_dict": ...}`, `{"model":
    ...}`) are unwrapped, and DataParallel's `module.` prefix is stripped.

    Args:
        path: str or path-like, the checkpoint file.

    Returns:
        dict mapping parameter names to numpy arrays.

    Raises:
        FileNotFoundError: the file does not exist.
        ImportError: a torch file is given and torch is not installed.
        ValueError: the file is in another format, truncated, corrupt, holds
            objects other than tensors or no state dict, or a tensor holds NaN
            or inf; the message names the file (and the tensor).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    if not os.path.isfile(path):
        raise ValueError(f"Checkpoint {path} is not a file.")
    found = file_format(path)
    if found == "safetensors":
        obj = _read_safetensors(path)
    elif found in CHECKPOINT_FORMATS:
        obj = _read_torch(path)
    else:
        hint = (f" A {FORMATS['hdf5']} loads with build_model(name, weights=FILE)."
                if found == "hdf5" else "")
        raise ValueError(format_mismatch(path, found, CHECKPOINT_FORMATS) + hint)
    return _unwrap(obj, path)
