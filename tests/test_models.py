"""Tests for resnet_keras/models.py, blocks.py, registry.py, weights.py, macs.py, backend.py."""

import json
import os
import subprocess
import sys
from typing import get_args

import numpy as np
import pytest

import resnet_keras as rk
from resnet_keras.backend import keras, keras_cache_dir
from resnet_keras.blocks import BLOCKS, Layout, preact_bottleneck_block
from resnet_keras.models import fold_channel_reversal, preprocessing_layers
from resnet_keras.registry import BlockKind, ModelSpec

KERAS_APPLICATIONS_PARAMS = {  # from keras.applications' own count_params()
    "resnet50": 25_636_712, "resnet101": 44_707_176, "resnet152": 60_419_944,
    "resnet50v2": 25_613_800, "resnet101v2": 44_675_560, "resnet152v2": 60_380_648,
}
TORCHVISION_PARAMS = {  # sum(p.numel() for p in torchvision.models.resnetXX().parameters())
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}
PAPER_TABLE6_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66,
                         "resnet56": 0.85, "resnet110": 1.7}
PAPER_TABLE1_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8,
                      "resnet101": 7.6, "resnet152": 11.3}
BIG = ("resnet101", "resnet152", "resnet101v2", "resnet152v2")


def _maybe_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def _trainable(model):
    return int(sum(w.shape.num_elements() for w in model.trainable_weights))


def _small(name):
    return (32, 32, 3) if rk.get_spec(name).stem == "imagenet" else (16, 16, 3)


@pytest.mark.parametrize("name", rk.list_models())
def test_every_model_builds_with_paper_structure(name):
    spec = rk.get_spec(name)
    model = rk.build_model(name, input_shape=_small(name), classes=7)
    assert model.output_shape == (None, 7)
    names = {layer.name for layer in model.layers}
    assert {"conv1_conv", "avg_pool", "predictions"} <= names
    if spec.stem == "imagenet":
        assert {"conv1_pad", "pool1_pad", "pool1_pool"} <= names
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    main_path = [c for c in convs if "_0_conv" not in c and not c.endswith(rk.blocks.SUBSAMPLE)]
    assert len(main_path) + 1 == spec.depth
    for stage, blocks in enumerate(spec.depths, start=2):
        for i in range(1, blocks + 1):
            assert f"conv{stage}_block{i}_1_conv" in names
            assert f"conv{stage}_block{i}_out" in names
            assert (f"conv{stage}_block{i}_add" in names) == (spec.residual and spec.family != "v2")
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def _strided_blocks(model, stage):
    """Indices of the blocks of `conv{stage}` whose main path has a stride-2 conv."""
    return {int(layer.name.split("_")[1][len("block"):]) for layer in model.layers
            if layer.name.startswith(f"conv{stage}_block")
            and isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2)
            and "_0_" not in layer.name}


@pytest.mark.parametrize("name", rk.list_models())
def test_spec_placement_fields_are_what_is_built(name):
    spec = rk.get_spec(name)
    model = rk.build_model(name, input_shape=_small(name), include_top=False)
    names = {layer.name for layer in model.layers}
    assert ("conv1_bn" in names) == ("conv1_relu" in names) == spec.stem_bn
    assert ("post_bn" in names) == ("post_relu" in names) == spec.post_bn
    size = model.get_layer("pool1_pool" if spec.stem == "imagenet" else "conv1_conv") \
        .output_shape[1]
    for stage, (blocks, stride) in enumerate(zip(spec.depths, spec.strides), start=2):
        last = {"first": 1, "last": blocks}[spec.stride_block]
        assert _strided_blocks(model, stage) == ({last} if stride == 2 else set())
        size = -(-size // stride)
        assert model.get_layer(f"conv{stage}_block{blocks}_out").output_shape[1] == size


def test_v2_layout_is_keras_applications_resnet_v2():
    v2 = rk.build_model("resnet50v2", input_shape=(64, 64, 3))
    names = {layer.name for layer in v2.layers}
    assert "conv1_bn" not in names and {"post_bn", "post_relu"} <= names
    assert rk.get_spec("resnet50v2").strides == (2, 2, 2, 1)
    # conv2..conv4 downsample in their last block; conv5 not at all.
    assert v2.get_layer("conv4_block6_2_conv").strides == (2, 2)
    assert v2.get_layer("conv4_block1_2_conv").strides == (1, 1)
    assert v2.get_layer("conv5_block3_2_conv").strides == (1, 1)
    assert v2.get_layer("conv4_block6_0_pool").strides == (2, 2)
    assert "conv5_block3_0_pool" not in names
    # The projection sits on each stage's first block only, where the channels change.
    assert {n for n in names if n.endswith("_0_conv")} == {
        f"conv{stage}_block1_0_conv" for stage in (2, 3, 4, 5)}
    assert v2.get_layer("conv5_block3_out").output_shape == (None, 2, 2, 2048)
    v1 = rk.build_model("resnet50", input_shape=(64, 64, 3))
    v1_names = {layer.name for layer in v1.layers}
    assert "conv1_bn" in v1_names and "post_bn" not in v1_names
    assert rk.get_spec("resnet50").strides == (1, 2, 2, 2)
    assert v1.get_layer("conv5_block3_out").output_shape == (None, 2, 2, 2048)


def test_block_table_covers_every_block_kind():
    assert set(BLOCKS) == set(get_args(BlockKind))
    assert {spec.block for spec in rk.REGISTRY.values()} == set(BLOCKS)


@pytest.mark.parametrize("fields, match", [
    (dict(block="residual"), "block='residual' is not valid; valid: basic, bottleneck"),
    (dict(stem="tiny"), "stem='tiny' is not valid; valid: imagenet, cifar"),
    (dict(stride_block="middle"), "stride_block='middle' is not valid; valid: first, last"),
    (dict(depths=(3, 3)), "one entry per stage"),
    (dict(unstrided_stage=3), "unstrided_stage=3 is not the index"),
])
def test_bad_registry_rows_have_clear_messages(fields, match):
    row = dict(name="resnet20x", block="basic", depths=(3, 3, 3), widths=(16, 32, 64),
               stem="cifar")
    with pytest.raises(ValueError, match=match):
        ModelSpec(**{**row, **fields})


def test_preact_block_has_no_plain_counterpart():
    with pytest.raises(ValueError, match="no plain counterpart"):
        preact_bottleneck_block(keras.Input((8, 8, 64)), 16, layout=Layout(), residual=False,
                                name="conv2_block1")


def test_keras_cache_dir_follows_keras_home(tmp_path, monkeypatch):
    from datasets import keras_datasets_dir

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_cache_dir("models") == str(tmp_path / "models")
    assert keras_datasets_dir() == str(tmp_path / "datasets")
    monkeypatch.delenv("KERAS_HOME")
    assert keras_cache_dir("models") == os.path.join(os.path.expanduser("~"), ".keras", "models")


@pytest.mark.parametrize("name", _maybe_slow(list(KERAS_APPLICATIONS_PARAMS)))
def test_params_equal_keras_applications(name):
    assert rk.build_model(name).count_params() == KERAS_APPLICATIONS_PARAMS[name]


@pytest.mark.parametrize("name", _maybe_slow(list(TORCHVISION_PARAMS)))
def test_trainable_params_equal_torchvision(name):
    assert _trainable(rk.build_model(name, variant="v1.5")) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", list(PAPER_TABLE6_PARAMS_M))
def test_cifar_params_match_paper_table6(name):
    model = rk.build_model(name, classes=10)
    assert round(_trainable(model) / 1e6, 2 if name != "resnet110" else 1) == \
        PAPER_TABLE6_PARAMS_M[name]
    plain = rk.build_model(name.replace("resnet", "plain"), classes=10)
    assert _trainable(plain) == _trainable(model), "option A shortcuts add no parameters"


@pytest.mark.parametrize("name", _maybe_slow(list(PAPER_TABLE1_GMACS)))
def test_macs_match_paper_table1(name):
    macs = rk.count_macs(rk.build_model(name, variant="v1")) / 1e9
    assert abs(macs - PAPER_TABLE1_GMACS[name]) / PAPER_TABLE1_GMACS[name] < 0.03


def test_count_macs_needs_fixed_input():
    model = rk.build_model("resnet20", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="fixed input size"):
        rk.count_macs(model)


def test_stride_placement_v1_vs_v15():
    v1 = rk.build_model("resnet50", variant="v1", input_shape=(64, 64, 3))
    v15 = rk.build_model("resnet50", variant="v1.5", input_shape=(64, 64, 3))
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_1_conv").use_bias
    assert not v15.get_layer("conv3_block1_1_conv").use_bias


def test_option_a_shortcut_is_strided_identity_with_zero_channels(tmp_path):
    model = rk.build_model("resnet20", classes=10)
    block_in = model.get_layer("conv2_block3_out").output
    subsample = model.get_layer("conv3_block1_0_subsample")
    probe = keras.Model(model.input, [block_in, subsample.output])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    inp, out = probe.predict(x, verbose=0)
    assert out.shape == (2, 16, 16, 32)
    np.testing.assert_array_equal(out[..., :16], inp[:, ::2, ::2, :])
    np.testing.assert_array_equal(out[..., 16:], 0.0)
    # Parameter-free in the paper's sense: nothing in the shortcut is learned.
    assert not subsample.trainable and subsample.kernel_regularizer is None
    def trainable(m):
        return sum(w.shape.num_elements() for w in m.trainable_weights)
    # Option B learns two projections (conv kernel, BN gamma and beta); option A nothing more.
    option_b = rk.build_model("resnet20", classes=10, shortcut="B")
    assert trainable(model) == trainable(option_b) - (16 * 32 + 32 * 64 + 2 * (32 + 64))
    # A weights file from before the shortcut was a conv (no such layer) still loads.
    path = tmp_path / "old.h5"
    model.save_weights(path)
    import h5py
    with h5py.File(path, "a") as f:
        for name in ("conv3_block1_0_subsample", "conv4_block1_0_subsample"):
            del f[name]
            names = [n for n in f.attrs["layer_names"] if n != name]
            f.attrs["layer_names"] = names
    rk.load_weights(rk.build_model("resnet20", classes=10), path)


def test_option_b_projects_only_where_shape_changes():
    model = rk.build_model("resnet20", shortcut="B", classes=10)
    names = {layer.name for layer in model.layers}
    assert {"conv3_block1_0_conv", "conv4_block1_0_conv"} <= names
    assert "conv2_block1_0_conv" not in names


def test_zero_init_last_bn():
    model = rk.build_model("resnet20", zero_init_last_bn=True)
    np.testing.assert_array_equal(model.get_layer("conv2_block1_2_bn").gamma.numpy(), 0.0)
    np.testing.assert_array_equal(model.get_layer("conv2_block1_1_bn").gamma.numpy(), 1.0)


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


@pytest.mark.parametrize("name", _maybe_slow(list(KERAS_APPLICATIONS_PARAMS)))
def test_keras_applications_weights_give_same_outputs(name, tmp_path):
    spec = rk.get_spec(name)
    reference = getattr(keras.applications, spec.keras_applications)(
        weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    _randomize_bn(reference)
    path = str(tmp_path / "ka.h5")
    reference.save_weights(path)
    ours = rk.build_model(name, weights=path, input_shape=(64, 64, 3),
                          classifier_activation=None)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    module = keras.applications.resnet_v2 if spec.family == "v2" else keras.applications.resnet
    expected = reference.predict(module.preprocess_input(pixels.copy()), verbose=0)
    got = ours.predict(pixels, verbose=0)
    diff = float(np.max(np.abs(got - expected)))
    print(f"{name}: max abs logit difference vs keras.applications = {diff:.2e}")
    assert diff < 1e-4


def test_imagenet_weights_from_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        rk.build_model("resnet50", weights="imagenet", include_top=False)
    message = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    os.makedirs(tmp_path / "models")
    reference.save_weights(str(tmp_path / "models" /
                               "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    ours = rk.build_model("resnet50", weights="imagenet", include_top=False)
    np.testing.assert_array_equal(ours.get_layer("conv5_block3_3_conv").kernel.numpy(),
                                  reference.get_layer("conv5_block3_3_conv").kernel.numpy())


def test_imagenet_weights_unavailable_for_resnet18():
    with pytest.raises(ValueError, match="resnet_keras.convert"):
        rk.build_model("resnet18", weights="imagenet")


def test_save_and_load_with_safe_mode(tmp_path):
    for name, variant in (("resnet20", None), ("resnet50", "v1")):
        model = rk.build_model(name, variant=variant, input_shape=(32, 32, 3), classes=3)
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        x = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   atol=1e-6)


def test_caffe_preprocessing_reorders_to_bgr():
    model = rk.build_model("resnet50", variant="v1", input_shape=(32, 32, 3))
    probe = keras.Model(model.input, model.get_layer("preprocess_bgr").output)
    x = np.zeros((1, 32, 32, 3), "float32")
    x[..., 0] = 200.0  # red
    out = probe.predict(x, verbose=0)
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 200.0 - 123.68], atol=1e-4)


def test_fold_channel_reversal_keeps_outputs_and_drops_the_reordering():
    keras.utils.set_random_seed(0)
    model = rk.build_model("resnet18", input_shape=(32, 32, 3), classes=5,
                           kernel_regularizer=keras.regularizers.L2(1e-4))
    weights = [w.copy() for w in model.get_weights()]
    folded = fold_channel_reversal(model)
    names = {layer.name for layer in folded.layers}
    assert folded.name == model.name and "preprocess_bgr" not in names
    assert not any(name.startswith("preprocess_channel") for name in names)
    np.testing.assert_array_equal(folded.get_layer("conv1_conv").get_weights()[0],
                                  model.get_layer("conv1_conv").get_weights()[0][:, :, ::-1])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # Summing conv1's products in the other channel order rounds float32 differently:
    # probabilities move by about 1e-6, far below any class change.
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    plain_input = rk.build_model("resnet20")  # `tf` preprocessing: nothing to fold
    assert fold_channel_reversal(plain_input) is plain_input


def test_fold_channel_reversal_leaves_models_it_cannot_fold():
    inputs = keras.Input((8, 8, 3))
    x = preprocessing_layers(inputs, "caffe")
    pooled = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    as_output = keras.Model(inputs, x)
    assert fold_channel_reversal(pooled) is pooled
    assert fold_channel_reversal(as_output) is as_output


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet51"), "Valid names: resnet18"),
    (dict(name="resnet20", classes=0), "positive integer"),
    (dict(name="resnet50", input_shape=(16, 16, 3)), "at least 32x32"),
    (dict(name="resnet50", input_shape=(64, 64, 1)), r"\(height, width, 3\)"),
    (dict(name="resnet50", variant="v3"), "valid: v1, v1.5"),
    (dict(name="resnet20", shortcut="C"), "valid: A, B"),
    (dict(name="resnet50", pooling="min"), "valid: None"),
    (dict(name="resnet50", preprocessing="bgr"), "valid: caffe, tf, torch"),
    (dict(name="resnet50", weights="imagenet", classes=10), "classes=1000"),
])
def test_bad_options_have_clear_messages(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        rk.build_model(name, **kwargs)


def test_weights_file_that_does_not_fit_names_the_layer(tmp_path):
    path = str(tmp_path / "v1.h5")
    rk.build_model("resnet18", variant="v1", input_shape=(32, 32, 3)).save_weights(path)
    with pytest.raises(ValueError,
                       match=r"'conv1_conv' expects weights of shapes \[\(7, 7, 3, 64\)\]"):
        rk.build_model("resnet18", variant="v1.5", input_shape=(32, 32, 3), weights=path)
    cifar_path = str(tmp_path / "r20.h5")
    rk.build_model("resnet20").save_weights(cifar_path)
    with pytest.raises(ValueError, match="'conv2_block4_1_conv'.* is not in the file"):
        rk.build_model("resnet32", weights=cifar_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rk.build_model("resnet20", weights=str(tmp_path / "missing.h5"))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable .h5"):
        rk.build_model("resnet20", weights=str(tmp_path / "junk.h5"))


def test_any_input_size_without_top():
    model = rk.build_model("resnet18", include_top=False, pooling="avg", input_shape=(96, 80, 3))
    assert model.output_shape == (None, 512)
    model = rk.build_model("resnet50v2", include_top=False, pooling="max",
                           input_shape=(None, None, 3))
    assert model.output_shape == (None, 2048)


def test_summary_command_json():
    out = subprocess.run([sys.executable, "-m", "resnet_keras", "summary", "resnet20", "resnet50",
                          "--json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [(r["name"], r["variant"]) for r in rows] == [
        ("resnet20", "A"), ("resnet20", "B"), ("resnet50", "v1"), ("resnet50", "v1.5")]
    assert {"name", "variant", "params", "trainable_params", "macs"} <= set(rows[0])
    assert rows[2]["params"] == KERAS_APPLICATIONS_PARAMS["resnet50"]


def test_summary_command_unknown_name():
    result = subprocess.run([sys.executable, "-m", "resnet_keras", "summary", "resnet7"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Unknown model name 'resnet7'" in result.stderr
    assert "Traceback" not in result.stderr
