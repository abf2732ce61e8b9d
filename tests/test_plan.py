"""Tests for training/plan.py: batch, steps and learning rate of every training loop."""

import dataclasses

import pytest

from job import config as config_lib
from training.plan import TrainingPlan


class _Data:
    """The two numbers a plan needs of a dataset."""
    name, num_train = "tiny", 1000


def _config(**overrides):
    return config_lib.resolve(overrides={k.replace("__", "."): v for k, v in overrides.items()})


def test_training_plan_scales_the_rate_and_counts_steps():
    config = config_lib.resolve(overrides={"train.batch_size": "64",
                                           "train.reference_batch_size": "64",
                                           "train.learning_rate": "0.1", "train.epochs": "2.5"})
    plan = TrainingPlan.for_training(config.train, _Data, replicas=2)
    assert (plan.global_batch, plan.steps_per_epoch, plan.epochs) == (128, 8, 3)
    assert plan.learning_rate == pytest.approx(0.2)  # linear scaling, Goyal et al.
    qat = TrainingPlan.for_qat(config.qat, _Data, replicas=2,
                              reference_batch_size=config.train.reference_batch_size)
    assert (qat.global_batch, qat.schedule, qat.warmup_steps) == (128, "cosine", 0)
    assert qat.learning_rate == pytest.approx(config.qat.learning_rate * 2)
    with pytest.raises(ValueError, match=r"larger than the training set \(1000 images of tiny"):
        TrainingPlan.for_training(config.train, _Data, replicas=16)
    with pytest.raises(ValueError, match="must end before the first learning-rate decay"):
        TrainingPlan.build(batch_size=8, replicas=1, num_train=100, epochs=4, learning_rate=0.1,
                           reference_batch_size=8, schedule="step", lr_decay_epochs=(2,),
                           warmup_epochs=2)


def test_learning_rate_schedules():
    config = config_lib.resolve("cifar10-paper")
    plan = TrainingPlan.build(batch_size=128, replicas=1, num_train=12_800, epochs=182,
                              learning_rate=0.1, reference_batch_size=128, schedule="step",
                              lr_decay_epochs=config.train.lr_decay_epochs)
    schedule = plan.learning_rate_schedule()
    assert [round(float(schedule(s)), 6) for s in (0, 9099, 9101, 13700)] == \
        [0.1, 0.1, 0.01, 0.001]
    plan = TrainingPlan.build(batch_size=10, replicas=1, num_train=100, epochs=20,
                              learning_rate=0.1, reference_batch_size=10, schedule="cosine",
                              warmup_epochs=1)
    schedule = plan.learning_rate_schedule()
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(200)) == pytest.approx(0.0, abs=1e-6)


def test_the_step_schedule_warms_up_linearly_or_holds_a_tenth():
    common = dict(batch_size=100, replicas=1, num_train=1000, epochs=20, learning_rate=0.1,
                  reference_batch_size=100, schedule="step", lr_decay_epochs=(10, 15))
    linear = TrainingPlan.build(**common, warmup_steps=40).learning_rate_schedule()
    assert [round(float(linear(s)), 6) for s in (0, 20, 39, 40, 100, 101, 151)] == \
        [0.01, 0.055, 0.09775, 0.1, 0.1, 0.01, 0.001]
    held = TrainingPlan.build(**common, warmup_epochs=4, warmup_shape="constant")
    assert held.warmup_steps == 40  # 4 epochs of 10 steps
    held = held.learning_rate_schedule()
    assert [round(float(held(s)), 6) for s in (0, 40, 41, 101)] == [0.01, 0.01, 0.1, 0.01]
    with pytest.raises(ValueError, match=r"warmup \(100 steps, 10 epochs\) must end before"):
        TrainingPlan.build(**common, warmup_steps=100)


def test_a_plan_made_in_python_refuses_a_schedule_whose_parts_do_not_fit():
    # The configuration checks the same rules (job/config.py); a plan built directly,
    # without a configuration, used to warm a cosine schedule up linearly instead.
    common = dict(batch_size=100, replicas=1, num_train=1000, epochs=20, learning_rate=0.1,
                  reference_batch_size=100)
    with pytest.raises(ValueError, match="warmup_shape=constant .* only with "
                                         "train.schedule=step; the cosine schedule"):
        TrainingPlan.build(**common, schedule="cosine", warmup_steps=40, warmup_shape="constant")
    with pytest.raises(ValueError, match=r"lr_decay_epochs=15,10 must be increasing"):
        TrainingPlan.build(**common, schedule="step", lr_decay_epochs=(15, 10))
    with pytest.raises(ValueError, match="both give the warmup's length"):
        TrainingPlan.build(**common, schedule="step", warmup_epochs=1, warmup_steps=10)


def test_a_model_compiled_with_the_linear_warmup_saves_and_loads_in_safe_mode(tmp_path):
    from resnet_keras.backend import keras

    plan = TrainingPlan.build(batch_size=10, replicas=1, num_train=100, epochs=4,
                              learning_rate=0.1, reference_batch_size=10, schedule="step",
                              lr_decay_epochs=(2,), warmup_steps=5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(plan.learning_rate_schedule()), loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    saved = loaded.optimizer.get_config()["learning_rate"]
    assert saved["registered_name"] == "resnet_keras>WarmupThenSteps"
    schedule = keras.optimizers.schedules.deserialize(saved)
    assert [round(float(schedule(s)), 6) for s in (0, 5, 21)] == [0.01, 0.1, 0.01]


def test_head_plan():
    config = _config(model__weights="x.h5", train__head_epochs="0.5",
                     train__head_learning_rate="0.2", train__batch_size="50",
                     train__reference_batch_size="100")
    head = TrainingPlan.for_head(config.train, _Data, replicas=2)
    assert (head.epochs, head.steps_per_epoch, head.schedule) == (1, 10, "cosine")
    assert head.learning_rate == pytest.approx(0.2)  # scaled to the global batch of 100
    assert TrainingPlan.for_head(_config().train, _Data, replicas=1) is None
    config = _config(model__weights="x.h5", train__head_epochs="1")
    assert TrainingPlan.for_head(config.train, _Data, replicas=1).learning_rate == \
        config.train.learning_rate


def test_an_unknown_schedule_is_refused_however_the_plan_is_made():
    # Before, any name but constant and cosine trained with the step schedule.
    message = "Unknown schedule 'exponential'; valid: cosine, step, constant."
    common = dict(batch_size=10, replicas=1, num_train=100, epochs=2, learning_rate=0.1,
                  reference_batch_size=10)
    with pytest.raises(ValueError, match=message):
        TrainingPlan.build(**common, schedule="exponential")
    train = dataclasses.replace(config_lib.resolve().train, schedule="exponential")
    with pytest.raises(ValueError, match=message):  # a section made in Python, not validated
        TrainingPlan.for_training(train, _Data, replicas=1)
    with pytest.raises(ValueError, match=message):
        TrainingPlan(replicas=1, global_batch=10, steps_per_epoch=10, epochs=2,
                     learning_rate=0.1, schedule="exponential")
    with pytest.raises(ValueError, match="Unknown warmup shape 'cosine'; valid: linear, constant."):
        TrainingPlan.build(**common, schedule="step", warmup_steps=5, warmup_shape="cosine")
