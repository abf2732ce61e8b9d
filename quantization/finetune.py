"""The `qat` stage: quantization-aware fine-tuning of a trained float model.

Starts from the run's trained float weights (`last.keras`), fine-tunes a few
epochs at a lower learning rate under the same tf.distribute strategy as
training, and saves `qat.keras` and `qat_result.json`.
"""

import logging
import time

from quantization.qat import quantize_model
from resnet_keras.backend import tf
from rundir import model_files
from rundir.model_files import load_float_model
from training import distribute
from training.callbacks import StageProgress
from training.loop import compile_for_plan, fit_inputs
from training.plan import TrainingPlan

logger = logging.getLogger(__name__)


def fine_tune(run, dataset, *, qat_cfg, train_cfg, calibration, augment=True,
              allow_unsafe=False) -> dict:
    """Quantization-aware fine-tuning; returns (and writes) its test accuracy.

    Args:
        run: a `rundir.RunDir` with a trained float model.
        dataset: a `datasets.Dataset`.
        qat_cfg: the job's `qat` section (`job.config.QATConfig`).
        train_cfg: the job's `train` section: the strategy, seed, momentum,
            label smoothing and reference batch of the float run.
        calibration: float32 `(N, H, W, 3)` training images; each fake-quant
            range starts at the float model's activations on them.
        augment: bool, the job's `data.augment`.
        allow_unsafe: bool, as `rundir.model_files.load_model`.

    Returns:
        dict with `test_top1`, `test_top5`, `epochs`, `seconds`.
    """
    tf.keras.utils.set_random_seed(train_cfg.seed)
    strategy = distribute.strategy_for(train_cfg)
    plan = TrainingPlan.for_qat(qat_cfg, dataset, replicas=strategy.num_replicas_in_sync,
                                reference_batch_size=train_cfg.reference_batch_size)
    with strategy.scope():
        # From tfmot's [-6, 6] a trained ResNet-20 evaluates at chance (10% on
        # digits, measured) and the first fine-tuning steps go astray.
        qat_model = quantize_model(load_float_model(run, allow_unsafe=allow_unsafe),
                                   calibration_images=calibration)
        compile_for_plan(qat_model, train_cfg, num_classes=dataset.num_classes, plan=plan,
                         jit_compile=False)
    train_ds, test_ds = fit_inputs(dataset, batch_size=plan.global_batch,
                                   label_smoothing=train_cfg.label_smoothing,
                                   seed=train_cfg.seed, augment=augment)
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
