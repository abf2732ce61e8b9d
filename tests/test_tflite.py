"""Tests for export/tflite.py: every variant converts, stays close to Keras and is checked.

The files are run with export/runtime.py (tested in tests/test_runtime.py);
`python -m export` and the export stage are tested in tests/test_export_run.py.
"""

import logging
import os

import numpy as np
import pytest

import resnet_keras as rk
from export import metadata, runtime, tflite, tflite_file
from quantization import qat
from resnet_keras.backend import keras, tf

CALIBRATION_SIZE = 128


@pytest.fixture(scope="module")
def test_split(digits):
    return digits.test_arrays()


@pytest.fixture(scope="module")
def reference(trained, test_split):
    return trained.predict(test_split[0].astype(np.float32), batch_size=128, verbose=0)


@pytest.fixture(scope="module")
def calibration(digits):
    return digits.calibration_images(CALIBRATION_SIZE)


@pytest.fixture(scope="module")
def qat_model(trained, digits, calibration):
    model = qat.quantize_model(trained, calibration_images=calibration)
    model.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(digits.train(64), epochs=1, steps_per_epoch=5, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, qat_model, calibration, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export")
    return tflite.export_variants(trained, out_dir=out_dir, qat_model=qat_model,
                                  calibration_images=calibration)


def test_export_variants_writes_one_named_file_per_variant(exported):
    assert list(exported) == list(tflite.VARIANTS)
    for variant, path in exported.items():
        assert os.path.basename(path) == f"resnet20_{variant}.tflite"
        assert runtime.load_interpreter(path).get_input_details()[0]["shape"].tolist() == [
            1, 32, 32, 3]


def test_metadata_leaves_every_variant_unchanged_in_litert(exported, test_split, tmp_path):
    images = test_split[0][:16]
    for variant, path in exported.items():
        copy = tmp_path / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        metadata.write(copy, labels=[str(i) for i in range(10)], version="test")
        assert metadata.read_metadata(copy)["labels"][9] == "9", variant
        np.testing.assert_array_equal(runtime.predict_tflite(str(copy), images),
                                      runtime.predict_tflite(path, images), err_msg=variant)


def test_float32_matches_keras(exported, test_split, reference):
    images, labels = test_split
    result = runtime.evaluate_tflite(exported["float32"], images, labels,
                                      reference_predictions=reference)
    print(f"float32 vs Keras: max |diff| {result['max_abs_diff']:.2e}, "
          f"agreement {result['agreement']:.4f}")
    assert result["max_abs_diff"] < 1e-4
    assert result["agreement"] >= 0.997
    assert result["top1"] == pytest.approx(np.mean(reference.argmax(-1) == labels))


def test_quantized_files_are_smaller(exported):
    size = {v: os.path.getsize(p) for v, p in exported.items()}
    print({v: f"{s / 1e6:.3f} MB" for v, s in size.items()})
    for variant in ("dynamic", "int8", "int8_qat"):
        assert size[variant] < 0.3 * size["float32"], variant
    assert 0.4 * size["float32"] < size["fp16"] < 0.6 * size["float32"]


# The least share of test images on which a file's top-1 must equal that of the Keras
# model it was converted from. Each lies well below what the variant reaches (printed by
# the test) so that one CPU's kernels cannot fail it where another's pass, and well above
# what a wrong conversion reaches (about 0.1, chance, with ten classes).
MIN_AGREEMENT = {
    "float32": 0.99,  # the same float graph: only the kernels' order of summation differs
    "fp16": 0.98,  # float16 weights, computed in float32
    "dynamic": 0.95,  # int8 weights; activations quantized per run, so closer than int8's
    "int8": 0.9,  # integer activations from 128 calibration images, a barely trained net
    "int8_qat": 0.95,  # the QAT model's own fake-quantized arithmetic, made integer
    "int8_float_io": 0.9,  # int8's integer graph; float32 only at its two ends
    "int16x8": 0.95,  # int8 weights, int16 activations
    "int4_weights": 0.9,  # 16 levels per weight channel
}


@pytest.fixture(scope="module")
def qat_reference(qat_model, test_split):
    return qat_model.predict(test_split[0].astype(np.float32), batch_size=128, verbose=0)


def test_every_variant_runs_close_to_the_model_it_came_from(exported, test_split, reference,
                                                            qat_reference):
    """int8_qat is compared with the QAT model, which trained further than the float one."""
    assert set(MIN_AGREEMENT) == set(exported)
    images, labels = test_split
    for variant, path in exported.items():
        source = qat_reference if variant == "int8_qat" else reference
        source_top1 = float(np.mean(source.argmax(-1) == labels))
        assert source_top1 > 0.8  # trained enough for accuracy to mean something
        result = runtime.evaluate_tflite(path, images, labels, reference_predictions=source)
        print(variant, f"agreement {result['agreement']:.3f}", result)
        assert result["top1"] >= source_top1 - 0.05, variant
        assert result["top5"] is not None and result["top5"] >= result["top1"]
        assert result["agreement"] >= MIN_AGREEMENT[variant], variant


@pytest.mark.parametrize("variant", ["int8", "int8_qat"])
def test_integer_input_and_output_types(variant, exported, trained, qat_model, calibration,
                                        test_split, reference, tmp_path):
    source = qat_model if variant == "int8_qat" else trained
    path = tmp_path / "int8_io.tflite"
    path.write_bytes(tflite.convert(source, variant, calibration_images=calibration,
                                    io_dtype="int8"))
    for file, dtype in ((exported[variant], np.uint8), (path, np.int8)):
        interpreter = runtime.load_interpreter(file)
        inputs, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert inputs["dtype"] == dtype and outputs["dtype"] == dtype
        if variant == "int8_qat":  # pixels map exactly onto the integer input
            assert inputs["quantization"] == (1.0, 0 if dtype == np.uint8 else -128)
    images, labels = test_split
    uint8_scores = runtime.predict_tflite(exported[variant], images[:100])
    int8_scores = runtime.predict_tflite(path, images[:100])
    assert np.mean(uint8_scores.argmax(-1) == int8_scores.argmax(-1)) >= 0.97


def test_caffe_reordering_is_folded_into_conv1(tmp_path):
    model = rk.build_model("resnet18", input_shape=(32, 32, 3), classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    for variant in ("float32", "int8"):
        path = tmp_path / f"{variant}.tflite"
        path.write_bytes(tflite.convert(model, variant, calibration_images=images))
        ops = {op.name for op in tflite_file.read(path).ops}
        assert not ops & {"STRIDED_SLICE", "CONCATENATION"}, ops
    scores = runtime.predict_tflite(tmp_path / "float32.tflite", images)
    np.testing.assert_allclose(scores, model.predict(images, verbose=0), atol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    return rk.build_model("resnet20", input_shape=(8, 8, 3), classes=3)


@pytest.mark.parametrize("images, message", [
    pytest.param(None, r"needs calibration_images.*\(N, 8, 8, 3\)", id="missing"),
    pytest.param(np.zeros((0, 8, 8, 3)), r"empty.*\(N, 8, 8, 3\)", id="empty"),
    pytest.param(np.zeros((4, 16, 16, 3)), r"\(N, 8, 8, 3\); got \(4, 16, 16, 3\)",
                 id="wrong-shape"),
    pytest.param(np.zeros((8, 8, 3)), r"\(N, 8, 8, 3\); got rank 3", id="wrong-rank"),
    pytest.param(np.full((2, 8, 8, 3), np.nan), "NaN", id="nan"),
])
def test_bad_calibration_images(tiny, images, message):
    with pytest.raises(ValueError, match=message):
        tflite.convert(tiny, "int8", calibration_images=images)


def test_closed_sets_and_model_kinds(tiny, tmp_path):
    with pytest.raises(ValueError, match="Unknown variant 'int4'; valid: float32, fp16, "
                                         "dynamic, int8, int8_qat"):
        tflite.convert(tiny, "int4")
    with pytest.raises(ValueError, match="Unknown io_dtype 'uint16'; valid: uint8, int8"):
        tflite.convert(tiny, "int8", io_dtype="uint16")
    with pytest.raises(ValueError, match="int8_qat needs the QAT model"):
        tflite.convert(tiny, "int8_qat")
    with pytest.raises(ValueError, match="QAT model, which converts as int8_qat"):
        tflite.convert(qat.quantize_model(tiny, calibration_images=np.zeros((1, 8, 8, 3))),
                       "float32")
    # export_variants checks everything before writing anything.
    for kwargs, message in (({"variants": ["float32", "int4"]}, "Unknown variant"),
                            ({"variants": ["float32", "int8_qat"]}, "needs qat_model"),
                            ({"variants": ["float32", "int8"]}, "needs calibration_images")):
        with pytest.raises(ValueError, match=message):
            tflite.export_variants(tiny, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_export_variants_logs_one_line_per_variant(tiny, tmp_path):
    # A handler on the module's logger itself, not caplog's on the root: a command
    # run earlier in this process (show_progress) stops the package loggers propagating.
    module_logger, handler = logging.getLogger("export.tflite"), _Lines()
    module_logger.addHandler(handler)
    level = module_logger.level
    module_logger.setLevel(logging.INFO)
    try:
        paths = tflite.export_variants(tiny, out_dir=tmp_path, variants=["float32", "fp16"])
    finally:
        module_logger.removeHandler(handler)
        module_logger.setLevel(level)
    lines = handler.lines
    assert [line.split()[0] for line in lines] == ["float32", "fp16"]
    for line, path in zip(lines, paths.values()):
        assert " s " in line and " MB " in line and line.endswith(path)


def test_configured_converter_is_the_variant_before_conversion(tiny):
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    exported = tflite.configured_converter(tiny, "int8", calibration_images=images)
    assert exported.optimizations == [tf.lite.Optimize.DEFAULT]
    assert exported.target_spec.supported_ops == [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    assert exported.inference_input_type == tf.uint8
    assert len(list(exported.representative_dataset())) == 4
    # The diagnosis' converter: same calibration, default target ops, float input and output.
    debug = tflite.configured_converter(tiny, "int8", calibration_images=images,
                                        integer_only=False)
    assert debug.optimizations == [tf.lite.Optimize.DEFAULT]
    assert tf.lite.OpsSet.TFLITE_BUILTINS_INT8 not in debug.target_spec.supported_ops
    assert debug.inference_input_type == tf.float32
    assert len(list(debug.representative_dataset())) == 4
    fp16 = tflite.configured_converter(tiny, "fp16")
    assert fp16.target_spec.supported_types == [tf.float16]
    assert not tflite.configured_converter(tiny, "float32").optimizations
    with pytest.raises(ValueError, match="integer_only=False applies to variant int8 only"):
        tflite.configured_converter(tiny, "fp16", integer_only=False)
    with pytest.raises(ValueError, match=r"calibration_images.*\(N, 8, 8, 3\)"):
        tflite.configured_converter(tiny, "int8", integer_only=False)
