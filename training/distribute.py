"""Picks the tf.distribute strategy, mixed precision and XLA for the machine at hand.

One GPU or CPU: the default strategy; several GPUs: MirroredStrategy; a
`TF_CONFIG` naming several workers: MultiWorkerMirroredStrategy; a TPU:
TPUStrategy. No home-made distribution, and no home-made failure detection:
a lost worker is found by the strategy's own coordination service
(`WorkerLost`). In a multi-worker job only the chief keeps the run's files
(`writes_run_files`, `worker_path`).
"""

import contextlib
import dataclasses
import os
import re
import shutil

from resnet_keras.backend import keras, tf
from resnet_keras.cpu import cpu_flags
from rundir import cluster, model_files
from training.options import DISTRIBUTIONS, PRECISION_SETTINGS, SWITCHES, check

# What a multi-worker job waits for a lost worker, in seconds. TensorFlow 2.21's
# MultiWorkerMirroredStrategy starts the coordination service (xla/tsl
# coordination_service.cc): every worker sends a heartbeat every 5 s to the
# chief, which declares a worker lost after 10 s without one (checked every
# second) and aborts the collectives of all the others; a worker that loses the
# chief finds out when its heartbeat fails (5 s RPC timeout, 1 s grace). The
# other workers then stop with `WorkerLost`: about 10-15 s after the loss, and
# within this bound, which the tests hold train.py to on a loaded machine.
LOST_WORKER_BOUND_S = 60

# The errors a collective raises once the coordination service aborted it
# (UNAVAILABLE: heartbeats stopped or the connection broke; DEADLINE_EXCEEDED:
# a heartbeat RPC timed out; ABORTED: the chief restarted under the others).
_LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                       tf.errors.AbortedError)
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


class WorkerLost(ConnectionError):
    """A worker of the multi-worker job stopped; the others cannot go on without it.

    A `ConnectionError` (an `OSError`), so the command line prints it as one
    `error: ...` line and exits with status 2.
    """


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
        kind: one of `training.options.DISTRIBUTIONS`: `auto`, `none`,
            `mirrored`, `multi_worker` or `tpu`. `auto` picks multi_worker when
            TF_CONFIG names several workers, a TPU when one is reachable through
            TPU_NAME, mirrored with several GPUs (or `cpu_replicas` > 1), else
            the default strategy.
        cpu_replicas: int, logical CPU devices to mirror over when there is no GPU.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: an unknown `kind`; the message lists the valid ones.
    """
    check(kind, DISTRIBUTIONS, what="distribution")
    if kind == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if cluster.this_worker("auto") is not None:
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


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` trains across several workers (processes, usually machines)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(t) for t in cluster.TASK_TYPES if t in spec.jobs) > 1


def writes_run_files(strategy) -> bool:
    """Whether this process keeps the run's files: the only process, or a job's chief."""
    return strategy.extended.should_checkpoint


def worker_path(path, strategy) -> str:
    """Where this process writes `path`: `path` itself, or a scratch copy on a non-chief worker.

    Every worker of a multi-worker job must save a model, since reading its
    on-read-synchronized variables (the BatchNorm statistics) is a collective;
    only the chief's file is kept. The others write into `workertemp_<task>`
    beside `path` and remove it (`remove_worker_path`), the Keras multi-worker
    guide's pattern, which tf_keras's BackupAndRestore and TensorBoard follow
    for their own folders.
    """
    path = os.fspath(path)
    if writes_run_files(strategy):
        return path
    task_id = strategy.cluster_resolver.task_id
    folder = os.path.join(os.path.dirname(path), f"workertemp_{task_id}")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, os.path.basename(path))


def remove_worker_path(path, strategy) -> None:
    """Removes the scratch folder of `worker_path(path, strategy)`, if it made one."""
    written = worker_path(path, strategy)
    if written != os.fspath(path):
        shutil.rmtree(os.path.dirname(written), ignore_errors=True)


def save_on_every_worker(model, path, *, strategy):
    """`rundir.model_files.save_model` on every worker of `strategy`; only the chief's file is kept.

    The others must save too: the save reads variables whose value is a
    collective over all workers (`worker_path`).
    """
    written = worker_path(path, strategy)
    model_files.save_model(model, written)
    remove_worker_path(path, strategy)


def means_a_lost_worker(error, strategy) -> bool:
    """Whether `error` is the abort of a multi-worker job's collectives after a lost worker."""
    return isinstance(error, _LOST_WORKER_ERRORS) and is_multi_worker(strategy)


def lost_worker(error, strategy, *, resume) -> "WorkerLost | None":
    """The `WorkerLost` that `error` means in a multi-worker job, or None if it means none.

    Args:
        error: a `tf.errors.OpError` raised by an op of the job.
        strategy: the job's strategy.
        resume: str, the run directory the workers resume from.
    """
    if not means_a_lost_worker(error, strategy):
        return None
    resolver = strategy.cluster_resolver
    me = cluster.Worker(resolver.cluster_spec().as_dict(), resolver.task_type,
                        int(resolver.task_id))
    return WorkerLost(describe_lost_worker(error.message or str(error), me=me, resume=resume))


def describe_lost_worker(message, *, me, resume) -> str:
    """The line that says which worker TensorFlow's `message` reports lost, and how to go on.

    Args:
        message: str, the message of the aborted collective.
        me: `rundir.cluster.Worker`, this process's task.
        resume: str, the run directory the workers resume from.
    """
    reason = _reason(message)
    heartbeats = re.search(r"stopped sending heartbeats\)?:\s*(/job:\S+)", message)
    remote = re.search(r"remote target (/job:\S+)", message)
    lost = "a worker"
    if heartbeats:
        # Seen by the chief, which runs the coordination service.
        task = _TASK.match(heartbeats.group(1))
        why = "it stopped sending heartbeats to TensorFlow's coordination service"
    elif "CoordinationService/Heartbeat" in message:
        # Seen by the others: the service runs on the chief.
        task, lost = None, me.chief.describe()
        why = f"its coordination service stopped answering heartbeats: {reason}"
    elif remote:
        task = _TASK.match(remote.group(1))
        grpc = re.search(r'grpc_message:"([^"]*)"', message)
        why = "the connection to it broke" + (f": {grpc.group(1)}" if grpc else "")
    else:
        task, why = None, reason
    if task:
        task_type, index = task.group(1), int(task.group(2))
        known = index < len(me.cluster.get(task_type, ()))
        lost = me.task(task_type, index).describe() if known else f"{task_type} {index}"
    return (f"{lost} of this {me.num_workers}-worker job was lost ({why}); {me.name} stopped "
            f"too. Restart every worker with the same TF_CONFIG and: python train.py --resume "
            f"{resume} (training continues from the last backup in "
            f"{os.path.join(resume, 'backup')}).")


def _reason(message):
    """TensorFlow's own words in an aborted collective's message, on one line."""
    aborted = re.search(r"Collective ops is aborted by: (.*?)(?:The error could be from|\Z)",
                        message, re.S)
    return " ".join((aborted.group(1) if aborted else message).split())[:300]


@contextlib.contextmanager
def stops_when_a_worker_is_lost(strategy, *, resume):
    """Turns the collective abort that follows a lost worker into `WorkerLost`.

    Raises:
        WorkerLost: a worker of the multi-worker job was lost.
    """
    try:
        yield
    except tf.errors.OpError as e:
        lost = lost_worker(e, strategy, resume=resume)
        if lost is None:
            raise
        raise lost from None


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_switch(value: str) -> bool:
    """`on`/`off`, or `auto`: on when a GPU is present.

    Raises:
        ValueError: `value` is not one of `training.options.SWITCHES`.
    """
    check(value, SWITCHES, what="on/off setting")
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


_THIS_MACHINE = object()


def choose_precision(setting: str, *, gpus=None, tpu=None, flags=_THIS_MACHINE) -> Precision:
    """The training dtype policy for `setting` on this machine.

    Args:
        setting: one of `training.options.PRECISION_SETTINGS`: `off`
            (float32), `float16` or `bfloat16` (forced), `auto`
            (16-bit where the hardware computes it natively: mixed_float16 on a
            GPU with float16 tensor cores, mixed_bfloat16 on a TPU or a CPU
            with AMX-BF16 or AVX512-BF16, float32 otherwise) or `on` (16-bit in
            any case: float16 on a GPU, bfloat16 on a TPU or CPU).
        gpus, tpu, flags: for tests; default: this machine's GPU compute
            capabilities, whether TPU_NAME is set, and `cpu_flags()` (None:
            unknown).

    Returns:
        `Precision`.

    Raises:
        ValueError: an unknown `setting`; the message lists the valid ones.
    """
    check(setting, PRECISION_SETTINGS, what="mixed-precision setting")
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
