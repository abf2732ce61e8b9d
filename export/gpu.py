"""Which ops of a `.tflite` Android's GPU delegate takes, from a run of the delegate itself.

MediaPipe Tasks' ImageClassifier with `Delegate.GPU` (export/mediapipe_client.py)
hands the file to TensorFlow Lite's GPU delegate, the delegate of tasks-vision
and of `GpuDelegate` on Android. On a Linux machine without a GPU it runs on
OpenGL ES through Mesa's llvmpipe, a GPU in software. The delegate partitions
the graph by its own op rules, logs each op type it leaves to the CPU with its
reason and how many ops it takes, and its OpenGL backend then compiles its
share. `check` reads that log and compares the GPU's top category of each image
with the CPU's, so it fails where the delegate leaves an op out, where the
backend cannot compile one, where MediaPipe cannot feed the file on the GPU,
and where the GPU computes a different answer.

TensorFlow Lite's model analyzer (`gpu_compatibility=True`) is not used: in
TensorFlow 2.21 it passes Flex ops, int64 CASTs and a TOPK_V2 model that the
delegate cannot convert (tests/test_gpu.py pins the last). What a run here
cannot show: the kernels of Android's OpenCL backend, which most phones try
first, and any phone's speed.

    >>> from export import gpu
    >>> gpu.check(python, "runs/x/export/resnet20_int16x8.tflite", images)["cpu_ops"]
    39
"""

import re

import numpy as np

from export import mediapipe_client, tflite_file

_UNSUPPORTED = "Following operations are not supported by GPU delegate:"
_PARTIAL = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) "
                      r"operations will run on the CPU\.")
_NONE = re.compile(r"No operations will run on the GPU, and all (\d+) operations will run "
                   r"on the CPU\.")
_OP_REASON = re.compile(r"^([A-Z][A-Z0-9_]*(?: [\w.-]+)?): (.+)$")
_GL = re.compile(r"GL version: [\d.]+ \((.+?)\), renderer: (.+)$", re.MULTILINE)


def check(python, path, images):
    """The GPU delegate's placement of the file's ops, and its answers against the CPU's.

    Args:
        python: the python of MediaPipe's GPU environment
            (`mediapipe_client.environment("gpu")`).
        path: a `.tflite` file with classifier metadata.
        images: uint8-valued array (N, H, W, 3), RGB 0..255, a few dozen test images.

    Returns:
        dict: `runner` (MediaPipe's version and the OpenGL ES it ran on),
        `ops` (the file's), `gpu_ops` and `cpu_ops` (as the delegate placed
        them; None where it never saw the file), `fallback` ({op: reason} for
        each op type it left to the CPU), `ran` (True when every image ran on
        the GPU), `error` (the one-line reason it did not, or None), `images`
        and `agreement` (the share of images whose top category on the GPU is
        the CPU's; None unless it ran).
    """
    ops = len(tflite_file.read(path).ops)
    cpu = mediapipe_client.classify(python, path, images, delegate="cpu")
    gpu = mediapipe_client.classify(python, path, images, delegate="gpu")
    result = {"runner": _runner(gpu), "ops": ops, **placement(gpu["log"], ops=ops),
              "ran": "index" in gpu, "error": gpu.get("error"), "images": len(images),
              "agreement": None}
    if "error" in cpu:
        # MediaPipe's runtime cannot build the file at all: the delegate never saw it.
        return {**result, "gpu_ops": None, "cpu_ops": None, "ran": False,
                "error": f"MediaPipe cannot run it on the CPU either: {cpu['error']}"}
    if not _GL.search(gpu["log"]):
        # No OpenGL ES context, so no delegate: its silence says nothing.
        return {**result, "gpu_ops": None, "cpu_ops": None}
    if result["ran"]:
        result["agreement"] = float(np.mean(np.asarray(gpu["index"]) == np.asarray(cpu["index"])))
    return result


def placement(log, *, ops):
    """`gpu_ops`, `cpu_ops` and `fallback` from the GPU delegate's log; see `check`.

    The delegate writes nothing when it takes every op, so a log without its
    partition line means all `ops` on the GPU.
    """
    fallback, gpu_ops = {}, ops
    listing = False
    for line in log.splitlines():
        line = line.strip()
        partial, none = _PARTIAL.search(line), _NONE.search(line)
        if partial or none:
            gpu_ops = int(partial.group(1)) if partial else 0
            listing = False
        elif line.endswith(_UNSUPPORTED):
            listing = True
        elif listing and _OP_REASON.match(line):
            op, reason = _OP_REASON.match(line).groups()
            fallback[op] = reason
    return {"gpu_ops": gpu_ops, "cpu_ops": ops - gpu_ops, "fallback": fallback}


def _runner(answer):
    gl = _GL.search(answer["log"])
    where = f"{gl.group(1)} on {gl.group(2).strip()}" if gl else "no OpenGL ES context"
    return f"MediaPipe Tasks {answer.get('version') or '(version unknown)'}, {where}"
