"""Picks the tf.distribute strategy, mixed precision and XLA for the machine at hand.

One GPU or CPU: the default strategy; several GPUs: MirroredStrategy; a
`TF_CONFIG` naming several workers: MultiWorkerMirroredStrategy; a TPU:
TPUStrategy. No home-made distribution.
"""

import json
import os

from resnet_keras.backend import keras, tf


def _tf_config_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def split_cpu(replicas: int) -> list[str]:
    """Splits the CPU into `replicas` logical devices (before TF's runtime starts).

    Lets MirroredStrategy be exercised and tested on a machine with no GPU.

    Raises:
        RuntimeError: the runtime started earlier with fewer CPU devices.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError:
        pass  # Already configured in this process; checked just below.
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < replicas:
        raise RuntimeError(f"{replicas} CPU replicas were asked for after TensorFlow started "
                           f"with {len(devices)}; select the strategy first.")
    return devices[:replicas]


_STRATEGIES = {}


def strategy_for(train_config):
    """The process's one strategy for `train_config` (created once, at start-up).

    MultiWorkerMirroredStrategy and logical CPU devices must exist before any
    other TensorFlow op runs, so train.py calls this before loading data.
    """
    key = (train_config.distribute, train_config.cpu_replicas)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = select_strategy(train_config.distribute,
                                           cpu_replicas=train_config.cpu_replicas)
    return _STRATEGIES[key]


def select_strategy(kind="auto", *, cpu_replicas=1):
    """Returns the tf.distribute strategy for `kind`.

    Args:
        kind: `auto`, `none`, `mirrored`, `multi_worker` or `tpu`. `auto`
            picks multi_worker when TF_CONFIG names several workers, a TPU when
            one is reachable through TPU_NAME, mirrored with several GPUs (or
            `cpu_replicas` > 1), else the default strategy.
        cpu_replicas: int, logical CPU devices to mirror over when there is no GPU.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if kind == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if _tf_config_workers() > 1:
            kind = "multi_worker"
        elif os.environ.get("TPU_NAME"):
            kind = "tpu"
        elif len(gpus) > 1 or cpu_replicas > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(split_cpu(max(cpu_replicas, 2)))
    return tf.distribute.get_strategy()


def strategy_name(strategy) -> str:
    """The public name of a strategy (the classes behind some are private)."""
    for name in ("MultiWorkerMirroredStrategy", "TPUStrategy", "MirroredStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):
            return name
    return "default strategy"


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_switch(value: str) -> bool:
    """`on`/`off`, or `auto`: on when a GPU is present."""
    return value == "on" or (value == "auto" and has_gpu())


def set_mixed_precision(enabled: bool) -> None:
    """mixed_float16 on GPUs; the classifier stays float32 (see build_model)."""
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
