"""Tests for resnet_keras/convert.py against a torchvision-equivalent PyTorch ResNet.

Run `python -m pytest tests/test_convert.py -s` to see the measured logit
differences between the converted Keras models and the PyTorch reference.
"""

import argparse
import contextlib
import copy
import functools
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch_resnet  # tests/ is on sys.path under pytest
from safetensors.numpy import save_file

import resnet_keras as rk
from resnet_keras import checkpoints, convert
from resnet_keras.backend import keras

TORCHVISION_PARAMS = {  # sum(p.numel() for p in torchvision.models.resnetXX().parameters())
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}
BIG = ("resnet101", "resnet152")
# Non-square, so that a height/width mix-up anywhere cannot cancel out.
HEIGHT, WIDTH = 64, 80
TOLERANCE = 1e-4
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
CLI = [sys.executable, "-m", "resnet_keras.convert"]
CLI_ERROR = "python -m resnet_keras.convert: error:"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _maybe_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def _trainable(model):
    return int(sum(w.shape.num_elements() for w in model.trainable_weights))


def _torch_input(pixels, dtype=np.float32):
    """Raw NHWC pixels in [0, 255] -> torchvision's normalized NCHW input."""
    x = (pixels.astype(dtype) / 255.0 - MEAN.astype(dtype)) / STD.astype(dtype)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _torch_features(net, pixels):
    """The reference's pooled features (the input of `fc`)."""
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(_torch_input(pixels)))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return torch.flatten(net.avgpool(x), 1).numpy()


@contextlib.contextmanager
def _floatx(dtype):
    previous = keras.backend.floatx()
    keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        keras.backend.set_floatx(previous)


def _pixels(n, seed):
    return np.random.default_rng(seed).uniform(0, 255, (n, HEIGHT, WIDTH, 3)).astype(np.float32)


@functools.cache
def _reference(name):
    """A torch reference net with random weights and realistic random BatchNorm state.

    Random running statistics alone make the eval-mode activations grow or
    vanish with depth, and a 1e-4 tolerance on logits of 1e6 or 1e-6 means
    nothing. So the statistics are first measured on random images (with
    random gamma/beta in place), then perturbed: every BN still maps its
    input with a mean, variance, gamma and beta that differ per channel.
    """
    torch.manual_seed(0)
    net = torch_resnet.build(name)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        net.train()
        net(_torch_input(_pixels(8, seed=1)))
        for bn in bns:
            bn.running_mean.add_(0.1 * torch.randn_like(bn.running_mean)
                                 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.4))
        # Logits of a few units, as a trained net's (fc's default init gives ~0.1).
        net.fc.weight.normal_(0.0, 1.0 / net.fc.in_features ** 0.5)
        net.fc.bias.normal_(0.0, 0.1)
    return net.eval()


def _state_dict(name):
    return {k: v.numpy().copy() for k, v in _reference(name).state_dict().items()}


def _keras_model(name, **kwargs):
    return rk.build_model(name, variant="v1.5", input_shape=(HEIGHT, WIDTH, 3),
                          classifier_activation=None, **kwargs)


@functools.cache
def _converted(name, dtype="float32"):
    with _floatx(dtype):
        model = _keras_model(name)
    convert.convert_torchvision_state_dict(_state_dict(name), model)
    return model


@functools.cache
def _torch_logits(name, dtype="float32"):
    """(raw pixels, the reference's logits) computed in `dtype`."""
    pixels = _pixels(4, seed=2)
    net = _reference(name) if dtype == "float32" else copy.deepcopy(_reference(name)).double()
    with torch.no_grad():
        return pixels, net(_torch_input(pixels, np.dtype(dtype))).numpy()


def _max_diff(model, name, dtype="float32", reference_dtype=None):
    pixels, expected = _torch_logits(name, reference_dtype or dtype)
    return float(np.abs(model(pixels.astype(dtype), training=False).numpy() - expected).max())


@pytest.mark.parametrize("name", _maybe_slow(list(TORCHVISION_PARAMS)))
def test_converted_logits_match_torch_float64(name):
    """The mapping itself, free of float32 round-off (only the Dense is float32)."""
    diff = _max_diff(_converted(name, "float64"), name, "float64")
    print(f"\n{name} float64: max |keras - torch| logit difference {diff:.1e}")
    assert diff < TOLERANCE


@pytest.mark.parametrize("name", _maybe_slow(list(TORCHVISION_PARAMS)))
def test_converted_float32_is_as_exact_as_torch_float32(name):
    """In float32 the converted model errs no more than torch itself does.

    Both frameworks' float32 results drift from the exact (float64) logits by
    round-off that grows with depth: ~1e-5 for ResNet-18, ~1e-4 for ResNet-50
    on random weights. So the bound is torch's own error (within a factor for
    the frameworks' different summation orders), not a fixed number.
    """
    model = _converted(name)
    keras_vs_torch = _max_diff(model, name)
    keras_error = _max_diff(model, name, reference_dtype="float64")
    torch_error = float(np.abs(_torch_logits(name)[1] - _torch_logits(name, "float64")[1]).max())
    scale = float(np.abs(_torch_logits(name, "float64")[1]).max())
    print(f"\n{name} float32: max |keras - torch| {keras_vs_torch:.1e}; error vs float64: "
          f"keras {keras_error:.1e}, torch {torch_error:.1e} (max |logit| {scale:.1f}, "
          f"input {HEIGHT}x{WIDTH})")
    assert keras_error <= max(TOLERANCE, 3 * torch_error)


@pytest.mark.parametrize("name", _maybe_slow(list(TORCHVISION_PARAMS)))
def test_trainable_params_equal_torch_reference(name):
    torch_params = sum(p.numel() for p in _reference(name).parameters())
    assert torch_params == TORCHVISION_PARAMS[name], "the reference differs from torchvision"
    assert _trainable(_converted(name)) == torch_params


def test_include_top_false_skips_fc():
    model = _keras_model("resnet18", include_top=False, pooling="avg")
    convert.convert_torchvision_state_dict(_state_dict("resnet18"), model)
    pixels = _pixels(2, seed=3)
    diff = np.abs(model.predict(pixels, verbose=0)
                  - _torch_features(_reference("resnet18"), pixels)).max()
    assert diff < TOLERANCE


def test_skip_loads_all_but_a_new_top():
    """A 1000-class checkpoint into a 10-class model: the features load, the top stays new."""
    state_dict = _state_dict("resnet18")
    assert convert.top_kernel_shape(state_dict) == (512, 1000)
    model = _keras_model("resnet18", classes=10)
    initial = model.get_layer("predictions").get_weights()
    convert.convert_torchvision_state_dict(state_dict, model, skip=("predictions",))
    pixels = _pixels(2, seed=3)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    diff = np.abs(features.predict(pixels, verbose=0)
                  - _torch_features(_reference("resnet18"), pixels)).max()
    assert diff < TOLERANCE
    for a, b in zip(model.get_layer("predictions").get_weights(), initial):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'fc', which is not a layer"):
        convert.convert_torchvision_state_dict(state_dict, model, skip=("fc",))


def test_safetensors_read_without_torch(tmp_path, monkeypatch):
    path = tmp_path / "resnet18.safetensors"
    state_dict = _state_dict("resnet18")
    save_file(state_dict, str(path))
    pth = _write_pth(tmp_path / "x.pth", {"a": torch.zeros(1)})
    # An `import torch` anywhere inside now raises ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)
    loaded = checkpoints.read_state_dict(path)
    assert loaded.keys() == state_dict.keys()
    assert all(np.array_equal(loaded[k], state_dict[k]) for k in state_dict)
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        checkpoints.read_state_dict(pth)


def _write_pth(path, obj):
    torch.save(obj, path)
    return path


def _save(path, state_dict, fmt):
    """Writes numpy `state_dict` to `path` in `fmt`, whatever the suffix of `path`."""
    if fmt == "safetensors":
        save_file(state_dict, str(path))
    else:
        torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, path,
                   _use_new_zipfile_serialization=fmt == "torch_zip")
    return path


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_read_state_dict_unwraps_checkpoints(tmp_path, wrap):
    tensors = _reference("resnet18").state_dict()
    obj = {"plain": tensors, "state_dict": {"state_dict": tensors, "epoch": 90},
           "model": {"model": tensors, "optimizer": {}},
           "module_prefix": {"module." + k: v for k, v in tensors.items()}}[wrap]
    loaded = checkpoints.read_state_dict(_write_pth(tmp_path / "ckpt.pt", obj))
    assert list(loaded) == list(tensors)
    assert np.array_equal(loaded["fc.weight"], tensors["fc.weight"].numpy())


def test_cli_pth_roundtrip(tmp_path):
    state_dict = {"module." + k: v for k, v in _reference("resnet18").state_dict().items()}
    checkpoint = _write_pth(tmp_path / "resnet18.pth", {"state_dict": state_dict})
    output = tmp_path / "out" / "resnet18_v1.5.h5"
    result = subprocess.run(CLI + ["--model", "resnet18", "--checkpoint", str(checkpoint),
                                   "--output", str(output)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    model = _keras_model("resnet18", weights=str(output))
    assert _max_diff(model, "resnet18") < TOLERANCE


def test_convert_file_infers_classes(tmp_path):
    net = torch_resnet.build("resnet18", num_classes=7)
    path = tmp_path / "r18_7.safetensors"
    save_file({k: v.numpy() for k, v in net.state_dict().items()}, str(path))
    model = convert.convert_file(path, model_name="resnet18", output=tmp_path / "r18.h5")
    assert model.output_shape == (None, 7)
    assert os.path.exists(tmp_path / "r18.h5")


# ---- bad inputs: each a clear message, never a traceback ----


def _cli(argv, capsys):
    """Runs the CLI in-process; returns (exit code, stderr lines)."""
    try:
        code = convert.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def _assert_cli_error(argv, capsys, match):
    code, lines = _cli(argv, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(CLI_ERROR), lines
    assert match in lines[0]


def _args(checkpoint, output, model="resnet18"):
    return ["--model", model, "--checkpoint", checkpoint, "--output", output]


def test_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.read_state_dict(missing)
    _assert_cli_error(_args(missing, tmp_path / "o.h5"), capsys, "does not exist")


@pytest.mark.parametrize("fmt", ["torch_zip", "torch_pickle", "safetensors"])
def test_truncated_checkpoint(tmp_path, capsys, fmt):
    suffix = ".safetensors" if fmt == "safetensors" else ".pth"
    path = _save(tmp_path / f"full{suffix}",
                 {"conv1.weight": np.ones((64, 3, 7, 7), np.float32)}, fmt)
    data = path.read_bytes()
    for cut in (len(data) // 2, 30, 5, 3, 0):
        truncated = tmp_path / f"cut{cut}{suffix}"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            checkpoints.read_state_dict(truncated)
    _assert_cli_error(_args(truncated, tmp_path / "o.h5"), capsys, "truncated or corrupt")


def test_not_a_state_dict(tmp_path):
    path = _write_pth(tmp_path / "x.pth", {"weights": [1, 2, 3]})
    with pytest.raises(ValueError, match="'weights' is a list, not a tensor"):
        checkpoints.read_state_dict(path)
    with pytest.raises(ValueError, match=r"holds no state dict \(found dict \(empty\)\)"):
        # Read, whatever the suffix.
        checkpoints.read_state_dict(_write_pth(tmp_path / "x.ckpt", {}))


@pytest.mark.parametrize("fmt, value", [("torch_zip", np.nan), ("torch_pickle", np.inf),
                                        ("safetensors", -np.inf)])
def test_non_finite_tensor_names_the_file_and_tensor(tmp_path, capsys, fmt, value):
    state_dict = _state_dict("resnet18")
    state_dict["layer1.0.conv1.weight"][0, 0, 1, 2] = value
    path = _save(tmp_path / "diverged.pth", state_dict, fmt)
    message = (f"{path} holds NaN or inf in tensor 'layer1.0.conv1.weight' (1 of 36,864 "
               f"values); refused")
    with pytest.raises(ValueError, match=re.escape(message)):
        checkpoints.read_state_dict(path)
    _assert_cli_error(_args(path, tmp_path / "o.h5"), capsys, message)
    assert not (tmp_path / "o.h5").exists()


def test_non_finite_tensor_is_named_as_in_the_file(tmp_path):
    state_dict = _reference("resnet18").state_dict()
    state_dict["fc.bias"] = torch.full_like(state_dict["fc.bias"], float("nan"))
    path = _write_pth(tmp_path / "ddp.pt",
                      {"model": {"module." + k: v for k, v in state_dict.items()}})
    with pytest.raises(ValueError, match=r"tensor 'module\.fc\.bias' \(1,000 of 1,000"):
        checkpoints.read_state_dict(path)


@pytest.mark.parametrize("fmt, name", [("safetensors", "resnet18.pth"),
                                       ("torch_zip", "resnet18.safetensors"),
                                       ("torch_pickle", "resnet18.bin")])
def test_format_is_read_from_content_not_suffix(tmp_path, fmt, name):
    state_dict = _state_dict("resnet18")
    expected = checkpoints.read_state_dict(_save(tmp_path / f"true.{fmt}", state_dict, fmt))
    loaded = checkpoints.read_state_dict(_save(tmp_path / name, state_dict, fmt))
    assert sorted(loaded) == sorted(expected) == sorted(state_dict)
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)


def test_unknown_content_names_the_file_and_the_formats(tmp_path, capsys):
    page = tmp_path / "resnet18.pth"
    page.write_bytes(b"<!DOCTYPE html><html>Not Found</html>")  # a failed download
    match = (f"{page} is in none of the formats read here (safetensors file, PyTorch "
             f"checkpoint (torch.save zip), legacy PyTorch checkpoint (torch.save pickle)): "
             f"it begins with b'<!DOCTYPE html><'")
    with pytest.raises(ValueError, match=re.escape(match)):
        checkpoints.read_state_dict(page)
    _assert_cli_error(_args(page, tmp_path / "o.h5"), capsys, match)
    h5 = tmp_path / "keras.pth"
    rk.build_model("resnet20").save_weights(str(tmp_path / "keras.h5"))
    os.rename(tmp_path / "keras.h5", h5)
    with pytest.raises(ValueError, match=re.escape(f"{h5} is a Keras .h5 weights file (HDF5), "
                                                   f"not one of the formats read here")):
        checkpoints.read_state_dict(h5)


@pytest.mark.parametrize("writer, refused", [
    # torchvision's reference scripts save their argparse arguments beside the weights.
    ("torch_zip", " (argparse.Namespace)"),
    ("torch_pickle", " (argparse.Namespace)"),
    ("pickle", ", or was not written by torch.save"),
])
def test_non_tensor_objects_are_refused_without_unsafe_advice(tmp_path, capsys, writer,
                                                              refused):
    path = tmp_path / "checkpoint.pth"
    if writer == "pickle":
        with open(path, "wb") as f:
            pickle.dump({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, f)
    else:
        torch.save({"model": _reference("resnet18").state_dict(),
                    "args": argparse.Namespace(lr=0.1)}, path,
                   _use_new_zipfile_serialization=writer == "torch_zip")
    message = (f"{path} holds Python objects other than tensors{refused}; refused: only "
               f"tensors are loaded from a checkpoint.")
    with pytest.raises(ValueError) as error:
        checkpoints.read_state_dict(path)
    assert str(error.value) == message
    code, lines = _cli(_args(path, tmp_path / "o.h5"), capsys)
    assert (code, lines) == (2, [f"{CLI_ERROR} {message}"])


def test_wrong_shape_names_the_key(tmp_path, capsys):
    state_dict = _state_dict("resnet18")
    state_dict["layer2.0.conv1.weight"] = np.zeros((128, 32, 3, 3), np.float32)
    model = _converted("resnet18")
    before = model.get_layer("conv1_conv").get_weights()[0].copy()
    with pytest.raises(ValueError, match=r"'layer2\.0\.conv1\.weight' has shape "
                                         r"\(128, 32, 3, 3\).*\(128, 64, 3, 3\)"):
        convert.convert_torchvision_state_dict(state_dict, model)
    # Nothing is loaded unless everything fits.
    assert np.array_equal(model.get_layer("conv1_conv").get_weights()[0], before)
    path = tmp_path / "bad.safetensors"
    save_file(state_dict, str(path))
    _assert_cli_error(_args(path, tmp_path / "o.h5"), capsys, "'layer2.0.conv1.weight'")


def test_wrong_classes_names_fc(tmp_path):
    with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(1000, 512\).*classes"):
        convert.convert_torchvision_state_dict(_state_dict("resnet18"),
                                               _keras_model("resnet18", classes=10))


@pytest.mark.parametrize("extra", ["layer1.0.conv1.bias", "layer1.2.conv1.weight",
                                   "encoder.weight"])
def test_leftover_key(extra):
    state_dict = _state_dict("resnet18")
    state_dict[extra] = np.zeros((64,), np.float32)
    with pytest.raises(ValueError, match=extra.replace(".", r"\.")):
        convert.convert_torchvision_state_dict(state_dict, _converted("resnet18"))


def test_deeper_checkpoint_into_smaller_model_and_back():
    with pytest.raises(ValueError, match=r"'layer1\.2\.conv1\.weight' has no counterpart"):
        convert.convert_torchvision_state_dict(_state_dict("resnet34"), _converted("resnet18"))
    with pytest.raises(ValueError, match=r"lacks key 'layer1\.2\.conv1\.weight'"):
        convert.convert_torchvision_state_dict(_state_dict("resnet18"), _converted("resnet34"))


def test_model_not_in_torchvision_layout():
    model = rk.build_model("resnet18", input_shape=(HEIGHT, WIDTH, 3))  # default v1
    with pytest.raises(ValueError, match=r"not in the torchvision layout.*variant='v1\.5'"):
        convert.convert_torchvision_state_dict(_state_dict("resnet18"), model)


@pytest.mark.parametrize("model_name, match", [("resnet99", "Unknown model name 'resnet99'"),
                                               ("resnet20", "torchvision publishes no")])
def test_unknown_model_name(tmp_path, capsys, model_name, match):
    with pytest.raises(ValueError, match=match):
        convert.convert_file(tmp_path / "x.pth", model_name=model_name,
                             output=tmp_path / "o.h5")
    _assert_cli_error(_args(tmp_path / "x.pth", tmp_path / "o.h5", model=model_name),
                      capsys, match)


def test_cli_usage_errors_and_help(tmp_path, capsys):
    _assert_cli_error(["--model", "resnet18"], capsys, "required")
    _assert_cli_error(_args(tmp_path / "x.pth", tmp_path / "o.keras"), capsys, "must end in .h5")
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--help"])
    assert exit_info.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out


def test_cli_subprocess_error_is_one_line(tmp_path):
    result = subprocess.run(CLI + _args(str(tmp_path / "nope.pth"), str(tmp_path / "o.h5")),
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # TensorFlow's C++ start-up logs may precede it; ours is exactly one line.
    ours = [line for line in result.stderr.splitlines() if line.startswith(CLI_ERROR)]
    assert len(ours) == 1 and "does not exist" in ours[0]

