"""The `qat` stage: quantization-aware fine-tuning of a trained float model.

Starts from the run's trained float weights (`last.keras`), fine-tunes a few
epochs at a lower learning rate under the same tf.distribute strategy as
training, and saves `qat.keras` and `qat_result.json`.
"""

import logging
import time

from quantization.qat import load_qat_model, quantize_model
from resnet_keras.backend import keras, tf
from training import distribute, model_files
from training.loop import StageProgress, compile_model, fit_inputs
from training.plan import TrainingPlan

logger = logging.getLogger(__name__)


def load_float_model(run):
    """The run's trained float model.

    Args:
        run: a `training.run_dir.RunDir`.

    Raises:
        FileNotFoundError: the run has no trained model; says which stage makes it.
        ValueError: the file is not a whole, safe `.keras` model
            (`training.model_files.load_model`).
    """
    path = run.require(run.last_model, what="trained model", stage="train")
    return model_files.load_model(path)


def load_run_qat_model(run):
    """The run's QAT model, or a clear error saying which stage makes it."""
    path = run.require(run.qat_model, what="QAT model", stage="qat",
                       hint=" (or leave int8_qat out of --export.variants).")
    return load_qat_model(path)


def fine_tune(config, run, dataset) -> dict:
    """Quantization-aware fine-tuning; returns (and writes) its test accuracy.

    Args:
        config: a resolved `training.config.Config` (uses `qat` and `train`).
        run: a `training.run_dir.RunDir` with a trained float model.
        dataset: a `datasets.Dataset`.

    Returns:
        dict with `test_top1`, `test_top5`, `epochs`, `seconds`.
    """
    tf.keras.utils.set_random_seed(config.train.seed)
    strategy = distribute.strategy_for(config.train)
    plan = TrainingPlan.for_qat(config, dataset, replicas=strategy.num_replicas_in_sync)
    calibration = dataset.calibration_images(
        min(config.export.calibration_size, dataset.num_train), seed=config.train.seed)
    with strategy.scope():
        # Each fake-quant range starts at the float model's activations on these
        # images; from tfmot's [-6, 6] a trained ResNet-20 evaluates at chance
        # (10% on digits, measured) and the first fine-tuning steps go astray.
        qat_model = quantize_model(load_float_model(run), calibration_images=calibration)
        optimizer = keras.optimizers.SGD(plan.learning_rate_schedule(),
                                         momentum=config.train.momentum)
        compile_model(qat_model, optimizer=optimizer, num_classes=dataset.num_classes,
                      label_smoothing=config.train.label_smoothing, jit_compile=False)
    train_ds, test_ds = fit_inputs(dataset, batch_size=plan.global_batch,
                                   label_smoothing=config.train.label_smoothing,
                                   seed=config.train.seed, augment=config.data.augment)
    logger.info("  QAT fine-tune: %s", plan.describe())
    start = time.time()
    qat_model.fit(train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                  validation_data=test_ds, callbacks=[StageProgress(plan.epochs)], verbose=0)
    seconds = time.time() - start
    model_files.save_model(qat_model, run.qat_model)
    metrics = qat_model.evaluate(test_ds, verbose=0, return_dict=True)
    result = {"test_top1": float(metrics["accuracy"]),
              "test_top5": float(metrics["top5"]) if "top5" in metrics else None,
              "epochs": plan.epochs, "seconds": round(seconds, 2)}
    run.write_json(run.qat_result, result)
    return result
