"""Tests for training/pretrained.py: which weights, variant and top a model starts from,
the `load_weights(skip=...)` it uses, and a fine-tuning run with a head phase end to end.
Published weights are fetched from tests/loopback.py's mirror on 127.0.0.1.

Every weights file is written here, tiny inputs (32x32) and CPU only: a
keras.applications ResNet50 `.h5`, torchvision-layout state dicts from
tests/torch_resnet.py (`.pth`, `.safetensors`) and `.h5` files of this package.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch_resnet  # tests/ is on sys.path under pytest
from loopback import Mirror, forget_proxies
from safetensors.numpy import save_file

import resnet_keras as rk
from job import config as config_lib
from resnet_keras import convert, fetch
from resnet_keras import weights as weights_lib
from resnet_keras.backend import keras
from training import pretrained
from training.loop import training_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SHAPE = (32, 32, 3)
KA_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"


def _config(**overrides):
    return config_lib.resolve(overrides={k.replace("__", "."): v for k, v in overrides.items()})


def _build(num_classes=10, **overrides):
    config = _config(**overrides)
    return training_model(config.model, weight_decay=config.train.weight_decay,
                          num_classes=num_classes, image_shape=IMAGE_SHAPE)


def _kernel(model, layer="conv1_conv"):
    return model.get_layer(layer).get_weights()[0]


@pytest.fixture(scope="module")
def torch_state():
    """A torchvision-layout ResNet-18 state dict (1000 classes) as numpy arrays."""
    torch.manual_seed(0)
    return {k: v.numpy() for k, v in torch_resnet.build("resnet18").state_dict().items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, torch_state):
    """{suffix: path} of the same state dict as `.pth` and `.safetensors`."""
    folder = tmp_path_factory.mktemp("torch")
    torch.save({k: torch.from_numpy(v) for k, v in torch_state.items()}, folder / "r18.pth")
    save_file(torch_state, str(folder / "r18.safetensors"))
    return {".pth": str(folder / "r18.pth"), ".safetensors": str(folder / "r18.safetensors")}


@pytest.fixture(scope="module")
def keras_cache(tmp_path_factory):
    """A Keras cache folder holding a keras.applications ResNet50 file (random weights)."""
    home = tmp_path_factory.mktemp("keras_home")
    os.makedirs(home / "models")
    model = keras.applications.ResNet50(weights=None, input_shape=IMAGE_SHAPE)
    model.save_weights(str(home / "models" / KA_FILE))
    return home


# ---- which weights, which variant, which top ----

@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_checkpoint_sets_v15_and_replaces_the_top(checkpoints, torch_state, suffix):
    model, weights = _build(model__name="resnet18", model__weights=checkpoints[suffix])
    np.testing.assert_array_equal(_kernel(model),
                                  torch_state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("conv4_block2_2_bn").moving_mean.numpy(),
                                  torch_state["layer3.1.bn2.running_mean"])
    assert (weights.variant, weights.variant_from_weights) == ("v1.5", True)
    assert model.name == "resnet18_v1_5"  # the torchvision layout, torch preprocessing
    assert weights.top_replaced and weights.file_top == (512, 1000)
    assert model.output_shape == (None, 10)
    assert "variant v1.5 (set from the weights" in weights.describe()


def test_checkpoint_top_loads_when_the_classes_match(tmp_path):
    torch.manual_seed(1)
    state = {k: v.numpy() for k, v in torch_resnet.build("resnet18", 10).state_dict().items()}
    path = tmp_path / "r18_10.safetensors"
    save_file(state, str(path))
    model, weights = _build(model__name="resnet18", model__weights=str(path),
                            model__variant="v1.5")
    assert not weights.top_replaced and not weights.variant_from_weights
    np.testing.assert_array_equal(_kernel(model, "predictions"), state["fc.weight"].T)


def test_keras_applications_file_by_path_and_as_imagenet(keras_cache, monkeypatch):
    path = str(keras_cache / "models" / KA_FILE)
    stored = weights_lib.weight_shapes(path)
    assert stored["conv1_conv"] == [(7, 7, 3, 64), (64,)]
    model, weights = _build(model__name="resnet50", model__weights=path)
    reference = keras.applications.ResNet50(weights=None, input_shape=IMAGE_SHAPE)
    reference.load_weights(path)
    for a, b in zip(model.get_layer("conv1_conv").get_weights(),
                    reference.get_layer("conv1_conv").get_weights()):
        np.testing.assert_array_equal(a, b)
    # keras.applications convs have biases: the v1 layout, set for the user.
    assert (weights.variant, weights.variant_from_weights, weights.top_replaced) == \
        ("v1", True, True)
    assert model.output_shape == (None, 10)

    monkeypatch.setenv("KERAS_HOME", str(keras_cache))
    model, weights = _build(1000, model__name="resnet50", model__weights="imagenet")
    assert (weights.path, weights.top_replaced) == (path, False)
    np.testing.assert_array_equal(_kernel(model, "predictions"),
                                  _kernel(reference, "predictions"))


def test_package_h5_gives_its_variant_and_loads_the_top(tmp_path):
    source = rk.build_model("resnet18", variant="v1.5", classes=10, input_shape=IMAGE_SHAPE)
    path = str(tmp_path / "r18.h5")
    source.save_weights(path)
    model, weights = _build(model__name="resnet18", model__weights=path)
    assert (weights.variant, weights.top_replaced) == ("v1.5", False)
    for layer in ("conv1_conv", "conv5_block2_2_conv", "predictions"):
        np.testing.assert_array_equal(_kernel(model, layer), _kernel(source, layer))
    with pytest.raises(ValueError, match=r"model.variant='v1' conflicts with model.weights="
                                         r"'.*r18.h5', which holds the 'v1.5' layout"):
        _build(model__name="resnet18", model__weights=path, model__variant="v1")


@pytest.mark.parametrize("name, variant, weights, expected", [
    ("resnet18", "v1", ".pth", "v1.5"),
    ("resnet50", "v1.5", "imagenet", "v1"),
])
def test_conflicting_variant_names_both(checkpoints, name, variant, weights, expected):
    source = checkpoints.get(weights, weights)
    with pytest.raises(ValueError) as error:
        pretrained.resolve(_config(model__name=name, model__variant=variant,
                                   model__weights=source).model)
    message = str(error.value)
    assert f"model.variant={variant!r}" in message and f"{expected!r} layout" in message
    assert "\n" not in message


def test_missing_corrupt_and_unsupported_files_name_the_file(tmp_path, checkpoints):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=f"weights file {missing} does not exist"):
        _build(model__name="resnet18", model__weights=missing)
    for name, data in (("bad.h5", b"not hdf5" * 8), ("bad.pth", b"not a zip" * 8)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=str(path)):
            _build(model__name="resnet18", model__weights=str(path))
    page = tmp_path / "weights.h5"
    page.write_bytes(b"<!DOCTYPE html>")  # a failed download
    with pytest.raises(ValueError, match=re.escape(
            f"model.weights='{page}': {page} is in none of the formats read here (Keras .h5 "
            f"weights file (HDF5), safetensors file, PyTorch checkpoint (torch.save zip), "
            f"legacy PyTorch checkpoint (torch.save pickle)): it begins with b'<!DOCTYPE")):
        _build(model__name="resnet18", model__weights=str(page))
    last = str(tmp_path / "last.keras")
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(last)
    with pytest.raises(ValueError, match=r"is a Keras \.keras model archive, .*Write its "
                                         r"weights with model\.save_weights\('FILE\.h5'\)"):
        _build(model__name="resnet18", model__weights=last)
    with pytest.raises(ValueError, match="torchvision has no resnet20"):
        _build(model__name="resnet20", model__weights=checkpoints[".pth"])
    with pytest.raises(ValueError, match="ImageNet weights for resnet50, .*not resnet18"):
        _build(model__name="resnet18", model__weights="imagenet")


def test_files_are_told_apart_by_content_not_suffix(tmp_path, checkpoints):
    renamed = {"st.pth": checkpoints[".safetensors"], "zip.safetensors": checkpoints[".pth"],
               "zip.h5": checkpoints[".pth"]}
    expected = _kernel(_build(model__name="resnet18",
                              model__weights=checkpoints[".safetensors"])[0])
    for name, source in renamed.items():
        shutil.copy(source, tmp_path / name)
        model, weights = _build(model__name="resnet18", model__weights=str(tmp_path / name))
        assert (weights.kind, weights.variant) == ("torchvision", "v1.5"), name
        np.testing.assert_array_equal(_kernel(model), expected, err_msg=name)
    source = rk.build_model("resnet18", variant="v1.5", classes=10, input_shape=IMAGE_SHAPE)
    source.save_weights(str(tmp_path / "r18.h5"))
    os.rename(tmp_path / "r18.h5", tmp_path / "h5.pth")
    model, weights = _build(model__name="resnet18", model__weights=str(tmp_path / "h5.pth"))
    assert (weights.kind, weights.variant, weights.top_replaced) == ("h5", "v1.5", False)
    np.testing.assert_array_equal(_kernel(model), _kernel(source))


def _with_non_finite(tmp_path, torch_state, kind):
    """A `kind` weights file for resnet18 with one NaN or inf; (path, the tensor's name)."""
    if kind == "h5":
        model = rk.build_model("resnet18", variant="v1.5", classes=10, input_shape=IMAGE_SHAPE)
        layer = model.get_layer("conv4_block2_2_bn")
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([gamma, beta, mean, np.where(np.arange(variance.size) == 7,
                                                       np.inf, variance)])
        path = str(tmp_path / "diverged.h5")
        model.save_weights(path)
        return path, "conv4_block2_2_bn/moving_variance:0"
    state = {k: v.copy() for k, v in torch_state.items()}
    state["layer3.1.bn2.weight"][5] = np.nan
    path = str(tmp_path / f"diverged{kind}")
    if kind == ".safetensors":
        save_file(state, path)
    else:
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path, "layer3.1.bn2.weight"


@pytest.mark.parametrize("kind", [".pth", ".safetensors", "h5"])
def test_non_finite_weights_are_refused_at_load_naming_file_and_tensor(tmp_path, torch_state,
                                                                       kind):
    path, tensor = _with_non_finite(tmp_path, torch_state, kind)
    with pytest.raises(ValueError, match=re.escape(
            f"{path} holds NaN or inf in tensor '{tensor}' (1 of ")):
        _build(model__name="resnet18", model__weights=path)


def test_non_finite_checkpoint_stops_train_py_at_start_up(tmp_path, torch_state):
    path, tensor = _with_non_finite(tmp_path, torch_state, ".pth")
    result = _train_py(tmp_path / "run", path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {path} holds NaN or inf in tensor '{tensor}' (1 of 256 values); "
                     f"refused: the file is corrupt or was saved from a diverged run."]
    assert "diverge" not in result.stdout and "Epoch" not in result.stdout
    assert not (tmp_path / "run" / "train_result.json").exists()


def test_imagenet_with_offline_asks_nothing_and_names_url_and_file(tmp_path):
    mirror = Mirror()
    try:
        result = subprocess.run(
            [sys.executable, "train.py", "--stages", "train", "--run-dir", str(tmp_path / "r"),
             "--model.name", "resnet50", "--model.weights", "imagenet", "--offline"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "KERAS_HOME": str(tmp_path / "empty"),
                 fetch.OFFLINE_ENV: "0", fetch.MIRROR_ENV: mirror.url})  # --offline decides
    finally:
        mirror.close()
    assert mirror.requests == []
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    # digits' 10 classes replace the top: the _notop file is the one to get.
    notop = KA_FILE.replace(".h5", "_notop.h5")
    assert lines == [
        f"error: ImageNet weights for resnet50: 1 file not in the cache, and downloads are off "
        f"(RESNET_KERAS_OFFLINE=1 or --offline): get {weights_lib.KERAS_APPLICATIONS_URL}"
        f"{notop} and put it at {tmp_path / 'empty' / 'models' / notop}."]


def test_torchvision_weights_by_name_are_fetched_converted_once_and_recorded(
        tmp_path, monkeypatch, torch_state, checkpoints):
    remote = convert.torchvision_checkpoint("resnet18")
    assert (remote.url, remote.file_hash, remote.hash_is_prefix) == (
        "https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd", True)
    served = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in torch_state.items()}, served)
    mirror = Mirror()
    mirror.add(remote.url, served.getvalue())  # its own sha256 listed: it is not the real one
    mirror.point(monkeypatch, tmp_path / "keras", tmp_path / "SHA256SUMS")
    try:
        model, weights = _build(model__name="resnet18", model__weights="torchvision")
        again = pretrained.resolve(_config(model__name="resnet18",
                                           model__weights="torchvision:IMAGENET1K_V1").model)
    finally:
        mirror.close()
        forget_proxies()
    assert mirror.requests == ["/download.pytorch.org/models/resnet18-f37072fd.pth"]
    converted = str(tmp_path / "keras" / "models" / "resnet18-f37072fd.h5")
    assert (weights.kind, weights.path, weights.variant, again.path) == (
        "torchvision_imagenet", converted, "v1.5", converted)
    np.testing.assert_array_equal(
        _kernel(model), _kernel(_build(model__name="resnet18",
                                       model__weights=checkpoints[".pth"])[0]))
    assert {k: v for k, v in pretrained.record(weights, variant=None).items()
            if k.startswith("weights")} == {
        "weights": "torchvision", "weights_file": converted,
        "weights_sha256": hashlib.sha256(open(converted, "rb").read()).hexdigest(),
        "weights_url": remote.url,
        "weights_published_hash": "sha256:" + hashlib.sha256(served.getvalue()).hexdigest()}
    with pytest.raises(ValueError, match="torchvision publishes IMAGENET1K_V1 for resnet18, "
                                         "not 'IMAGENET1K_V2'"):
        _build(model__name="resnet18", model__weights="torchvision:IMAGENET1K_V2")
    with pytest.raises(ValueError, match="torchvision publishes ImageNet weights for "
                                         "resnet18, .*, not resnet20"):
        _build(model__name="resnet20", model__weights="torchvision")


def test_published_torchvision_names_carry_their_hash_prefix():
    for name, published in convert.TORCHVISION_WEIGHTS.items():
        assert name in convert.TORCHVISION_MODELS and "IMAGENET1K_V1" in published
        for file_name in published.values():
            assert re.fullmatch(rf"{name}-[0-9a-f]{{8}}\.pth", file_name)


def test_load_weights_skip_is_checked(tmp_path):
    model = rk.build_model("resnet20", classes=10)
    path = str(tmp_path / "r20.h5")
    model.save_weights(path)
    other = rk.build_model("resnet20", classes=7)
    with pytest.raises(ValueError, match="layer 'predictions' expects"):
        weights_lib.load_weights(other, path)
    initial = _kernel(other, "predictions")
    weights_lib.load_weights(other, path, skip=("predictions",))
    np.testing.assert_array_equal(_kernel(other), _kernel(model))
    np.testing.assert_array_equal(_kernel(other, "predictions"), initial)
    with pytest.raises(ValueError, match="'prediction', which is not a layer"):
        weights_lib.load_weights(other, path, skip=("prediction",))
    with pytest.raises(ValueError, match=r"write skip=\('predictions',\)"):
        weights_lib.load_weights(other, path, skip="predictions")


# ---- the train stage with a head phase, end to end ----

def _train_py(run_dir, checkpoint, *args, stages="train"):
    return subprocess.run(
        [sys.executable, "train.py", "--stages", stages, "--run-dir", str(run_dir),
         "--model.name", "resnet18", "--model.weights", checkpoint, "--train.head_epochs", "1",
         "--train.epochs", "1", "--train.steps_per_epoch", "2", "--train.batch_size", "16",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def _layer_weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


# About 40 s (two training phases of a resnet18); in the slow suite to keep the default in budget.
@pytest.mark.slow
def test_head_phase_freezes_the_backbone(tmp_path, checkpoints, torch_state):
    run_dir = tmp_path / "run"
    result = _train_py(run_dir, checkpoints[".pth"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "variant v1.5 (set from the weights" in result.stdout
    assert "head phase: only predictions trains" in result.stdout

    start = rk.build_model("resnet18", variant="v1.5", classes=10, input_shape=IMAGE_SHAPE)
    from resnet_keras.convert import convert_torchvision_state_dict
    convert_torchvision_state_dict(torch_state, start, skip=("predictions",))
    start = _layer_weights(start)
    head = _layer_weights(keras.models.load_model(str(run_dir / "head.keras")))
    last = _layer_weights(keras.models.load_model(str(run_dir / "last.keras")))
    for name, arrays in start.items():
        if name != "predictions":  # kernels, biases and BN moving statistics alike
            for a, b in zip(arrays, head[name]):
                np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(head["predictions"][0], start["predictions"][0])
    assert not np.array_equal(last["conv1_conv"][0], head["conv1_conv"][0])
    assert not np.array_equal(last["conv1_bn"][2], head["conv1_bn"][2])  # moving mean

    train_result = json.loads((run_dir / "train_result.json").read_text())
    assert {k: train_result[k] for k in ("weights", "variant", "variant_from_weights",
                                         "top_replaced", "head_epochs")} == \
        {"weights": checkpoints[".pth"], "variant": "v1.5", "variant_from_weights": True,
         "top_replaced": True, "head_epochs": 1}
    # A file given by path: no URL, its own digest.
    assert (train_result["weights_url"], train_result["weights_published_hash"]) == (None, None)
    assert train_result["weights_sha256"] == fetch.file_digest(checkpoints[".pth"])


@pytest.mark.slow
def test_finetuned_run_goes_through_qat_and_export(tmp_path, checkpoints):
    run_dir = tmp_path / "run"
    result = _train_py(run_dir, checkpoints[".pth"], "--qat.epochs", "1",
                       "--qat.batch_size", "128", "--export.variants", "float32,int8,int8_qat",
                       "--export.calibration_size", "16", stages="train,qat,export")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert sorted(manifest) == ["float32", "int8", "int8_qat"]
    assert all((run_dir / "export" / name).exists() for name in manifest.values())

    # The stage run again, as after a kill: head.keras is loaded, not trained again.
    modified = os.path.getmtime(run_dir / "head.keras")
    result = _train_py(run_dir, checkpoints[".pth"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "head phase already done (head.keras loaded), skipped" in result.stdout
    assert os.path.getmtime(run_dir / "head.keras") == modified


@pytest.mark.parametrize("num_classes, served", [
    (10, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),  # the top is new
    (1000, KA_FILE),  # ImageNet's classes: the top is kept
])
def test_imagenet_fetches_the_notop_file_unless_the_top_is_kept(tmp_path, monkeypatch,
                                                                num_classes, served):
    mirror = Mirror()  # holds only the file this case should ask for: a 404 for the other
    mirror.add(weights_lib.KERAS_APPLICATIONS_URL + served, b"weights")
    mirror.point(monkeypatch, tmp_path / "keras", tmp_path / "SHA256SUMS")
    try:
        config = _config(model__name="resnet50", model__weights="imagenet")
        weights = pretrained.resolve(config.model, num_classes=num_classes)
    finally:
        mirror.close()
        forget_proxies()
    assert os.path.basename(weights.path) == served
    assert [os.path.basename(r) for r in mirror.requests] == [served]
