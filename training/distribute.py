"""Picks the tf.distribute strategy, mixed precision and XLA for the machine at hand.

One GPU or CPU: the default strategy; several GPUs: MirroredStrategy; a
`TF_CONFIG` naming several workers: MultiWorkerMirroredStrategy; a TPU:
TPUStrategy. No home-made distribution.
"""

import contextlib
import dataclasses
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


# CPU flags (Linux /proc/cpuinfo names) with native bfloat16 arithmetic.
BF16_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
_POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class Precision:
    """The Keras dtype policy chosen for training, and why."""

    policy: str  # float32, mixed_float16 or mixed_bfloat16
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def cpu_flags(cpuinfo="/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags, or None where the system does not list them."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


_THIS_MACHINE = object()


def choose_precision(setting: str, *, gpus=None, tpu=None, flags=_THIS_MACHINE) -> Precision:
    """The training dtype policy for `setting` on this machine.

    Args:
        setting: `off` (float32), `float16` or `bfloat16` (forced), `auto`
            (16-bit where the hardware computes it natively: mixed_float16 on a
            GPU with float16 tensor cores, mixed_bfloat16 on a TPU or a CPU
            with AMX-BF16 or AVX512-BF16, float32 otherwise) or `on` (16-bit in
            any case: float16 on a GPU, bfloat16 on a TPU or CPU).
        gpus, tpu, flags: for tests; default: this machine's GPU compute
            capabilities, whether TPU_NAME is set, and `cpu_flags()` (None:
            unknown).

    Returns:
        `Precision`.
    """
    if setting in _POLICIES:
        return Precision(_POLICIES[setting], f"--train.mixed_precision {setting}")
    if gpus is None:
        gpus = [tuple(tf.config.experimental.get_device_details(g).get("compute_capability")
                      or (0, 0)) for g in tf.config.list_physical_devices("GPU")]
    tpu = bool(os.environ.get("TPU_NAME")) if tpu is None else tpu
    if tpu:
        return Precision("mixed_bfloat16", "TPU: bfloat16 is its native 16-bit type")
    if gpus:
        if min(gpus) >= (7, 0):
            return Precision("mixed_float16", f"GPU with float16 tensor cores (compute "
                                              f"capability {'.'.join(map(str, min(gpus)))})")
        if setting == "on":
            return Precision("mixed_float16", "GPU without float16 tensor cores, as asked (on)")
        return Precision("float32", "GPU without float16 tensor cores (compute capability "
                                    "below 7.0)")
    flags = cpu_flags() if flags is _THIS_MACHINE else flags
    native = [name for flag, name in BF16_CPU_FLAGS.items() if flag in (flags or ())]
    if native:
        return Precision("mixed_bfloat16", f"CPU with {' and '.join(native)}")
    known = "has neither AMX-BF16 nor AVX512-BF16" if flags is not None else (
        "features unknown")
    if setting == "on":
        return Precision("mixed_bfloat16", f"CPU {known}, as asked (on): bfloat16 is emulated")
    return Precision("float32", f"CPU {known}: 16-bit would be emulated, slower")


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras's global dtype policy is `name` inside the block, and as before after it.

    A model built inside computes in that policy's type for good and keeps
    float32 variables; the classifier stays float32 (see build_model).
    """
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)
