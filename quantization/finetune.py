"""The `qat` stage: quantization-aware fine-tuning of a trained float model.

Starts from the run's trained float weights (`last.keras`), fine-tunes a few
epochs at a lower learning rate under the same tf.distribute strategy as
training, and saves `qat.keras` and `qat_result.json`.
"""

import json
import math
import os
import time

from quantization.qat import load_qat_model, quantize_model
from resnet_keras.backend import keras, tf
from training import distribute
from training.loop import StageProgress, compile_model, fit_inputs

FLOAT_MODEL = "last.keras"
QAT_MODEL = "qat.keras"


def load_float_model(run_dir):
    """The run's trained float model.

    Raises:
        FileNotFoundError: the run has no trained model; says which stage makes it.
    """
    path = os.path.join(run_dir, FLOAT_MODEL)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{run_dir} has no trained model ({FLOAT_MODEL}). Run the train stage first: "
            f"python train.py --stages train --run-dir {run_dir}")
    return keras.models.load_model(path, safe_mode=True)


def fine_tune(config, run_dir, dataset) -> dict:
    """Quantization-aware fine-tuning; returns (and writes) its test accuracy.

    Args:
        config: a resolved `training.config.Config` (uses `qat` and `train`).
        run_dir: str, a run directory with a trained float model.
        dataset: a `datasets.Dataset`.

    Returns:
        dict with `test_top1`, `test_top5`, `epochs`, `seconds`.
    """
    cfg = config.qat
    tf.keras.utils.set_random_seed(config.train.seed)
    distribute.set_mixed_precision(False)  # fake-quant ops are float32 only
    strategy = distribute.strategy_for(config.train)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = math.ceil(dataset.num_train / global_batch)
    epochs = math.ceil(cfg.epochs)
    learning_rate = cfg.learning_rate * global_batch / config.train.reference_batch_size
    calibration = dataset.calibration_images(
        min(config.export.calibration_size, dataset.num_train), seed=config.train.seed)
    with strategy.scope():
        # Each fake-quant range starts at the float model's activations on these
        # images; from tfmot's [-6, 6] a trained ResNet-20 evaluates at chance
        # (10% on digits, measured) and the first fine-tuning steps go astray.
        qat_model = quantize_model(load_float_model(run_dir), calibration_images=calibration)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate,
                                                          epochs * steps_per_epoch)
        compile_model(qat_model, optimizer=keras.optimizers.SGD(
            schedule, momentum=config.train.momentum), num_classes=dataset.num_classes,
            label_smoothing=config.train.label_smoothing, jit_compile=False)
    train_ds, test_ds = fit_inputs(dataset, batch_size=global_batch,
                                   label_smoothing=config.train.label_smoothing,
                                   seed=config.train.seed, augment=config.data.augment)
    print(f"  QAT fine-tune: {epochs} epochs x {steps_per_epoch} steps, lr {learning_rate:g}, "
          f"global batch {global_batch}", flush=True)
    start = time.time()
    qat_model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=test_ds, callbacks=[StageProgress(epochs)], verbose=0)
    seconds = time.time() - start
    path = os.path.join(run_dir, QAT_MODEL)
    qat_model.save(path)
    metrics = qat_model.evaluate(test_ds, verbose=0, return_dict=True)
    result = {"test_top1": float(metrics["accuracy"]),
              "test_top5": float(metrics["top5"]) if "top5" in metrics else None,
              "epochs": epochs, "seconds": round(seconds, 2)}
    with open(os.path.join(run_dir, "qat_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def load_run_qat_model(run_dir):
    """The run's QAT model, or a clear error saying which stage makes it."""
    path = os.path.join(run_dir, QAT_MODEL)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{run_dir} has no QAT model ({QAT_MODEL}). Run the qat stage first "
            f"(python train.py --stages qat --run-dir {run_dir}) or leave int8_qat out of "
            f"--export.variants.")
    return load_qat_model(path)
