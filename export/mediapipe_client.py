"""MediaPipe Tasks' ImageClassifier, the client Android apps run our files in, in its own venvs.

Its C++ task is the one `com.google.mediapipe:tasks-vision` runs on Android.
mediapipe needs absl-py 2 and tensorflow-model-optimization pins absl-py 1, so
it runs in virtual environments of its own, one per delegate: the CPU's from
requirements-mediapipe.txt (the current release), the GPU's from
requirements-mediapipe-gpu.txt (0.10.35: every 1.x release refuses the GPU path
where the GPU is emulated, as Mesa's llvmpipe is here; that file quotes the
error). `build` makes one (`python -m export.mediapipe_client` both, about 100 MB
each from pip), cached under `~/.cache/resnet-keras/mediapipe-<hash of its file>`;
a changed file builds a new one, and RESNET_KERAS_CACHE moves the cache.
`classify` runs one file on the CPU or through TensorFlow Lite's GPU delegate,
each file in a process of its own, and returns what the task answered and logged.

    >>> python = mediapipe_client.build("cpu")
    >>> mediapipe_client.classify(python, "runs/x/export/resnet20_int8.tflite", images)["index"][:3]
    [0, 1, 2]
"""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The environment each delegate runs in: its requirements file.
REQUIREMENTS = {"cpu": _ROOT / "requirements-mediapipe.txt",
                "gpu": _ROOT / "requirements-mediapipe-gpu.txt"}
DELEGATES = tuple(REQUIREMENTS)
# One file on a few hundred images takes seconds; a task that hangs must not stop the report.
TIMEOUT_S = 300

# Runs in the MediaPipe environment: argv[1] is JSON {"file", "images" (.npy of uint8
# (N, H, W, 3) RGB), "delegate"}; prints {"version", "index", "name"} (the top category
# of each image) or {"version", "error"} where the task refuses the file or an image.
_CLIENT = """
import json, sys
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions

spec = json.loads(sys.argv[1])
images = np.load(spec["images"])
delegate = {"cpu": BaseOptions.Delegate.CPU, "gpu": BaseOptions.Delegate.GPU}[spec["delegate"]]
result = {"version": mp.__version__}
try:
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=spec["file"], delegate=delegate))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        top = [classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                            data=np.ascontiguousarray(image)))
               .classifications[0].categories[0] for image in images]
    result.update(index=[c.index for c in top], name=[c.category_name for c in top])
except Exception as error:  # the task's refusal is the answer, whatever its type
    result["error"] = str(error) or type(error).__name__
print(json.dumps(result), flush=True)
"""


def _check_delegate(delegate):
    if delegate not in DELEGATES:
        raise ValueError(f"delegate must be one of {', '.join(DELEGATES)}, got {delegate!r}.")
    return delegate


def folder(delegate):
    """Where the environment for `delegate`'s requirements file lives, built or not."""
    requirements = REQUIREMENTS[_check_delegate(delegate)]
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache = pathlib.Path(os.environ.get("RESNET_KERAS_CACHE",
                                        pathlib.Path.home() / ".cache" / "resnet-keras"))
    return cache / f"mediapipe-{digest}"


def environment(delegate):
    """The python of `delegate`'s environment, or None where it is not built."""
    python = folder(delegate) / "bin" / "python"
    return python if python.exists() else None


def build(delegate):
    """The python of `delegate`'s environment, built first where it is missing.

    Raises:
        ValueError: an unknown delegate.
        RuntimeError: pip could not install the requirements file; the
            message has pip's own last lines.
    """
    python = environment(delegate)
    if python is not None:
        return python
    requirements, target = REQUIREMENTS[delegate], folder(delegate)
    # Built aside and renamed when complete, so an interrupted build is never used.
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    install = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", "-r", str(requirements)],
                             capture_output=True, text=True)
    if install.returncode:
        shutil.rmtree(building, ignore_errors=True)
        raise RuntimeError(f"pip could not install {requirements.name} into {building}:\n"
                           f"{install.stderr[-3000:]}")
    try:
        building.rename(target)
    except OSError:  # another process finished first: use its environment
        shutil.rmtree(building, ignore_errors=True)
    return target / "bin" / "python"


def classify(python, path, images, *, delegate="cpu"):
    """The ImageClassifier's top category of each image, as an app gets it (no options).

    Args:
        python: the python of `delegate`'s environment (`build` or `environment`).
        path: a `.tflite` file with classifier metadata (export/metadata.py).
        images: uint8-valued array (N, H, W, 3), RGB 0..255.
        delegate: `cpu`, or `gpu` for TensorFlow Lite's GPU delegate; on a
            machine without a display it runs on EGL's surfaceless platform,
            which Mesa serves with llvmpipe, a GPU in software.

    Returns:
        dict: `version` (MediaPipe's), then `index` and `name` (lists, one per
        image) or `error` (the task's reason, one line), and `log` (what the
        task and TensorFlow Lite wrote to stderr).

    Raises:
        ValueError: an unknown delegate.
    """
    _check_delegate(delegate)
    env = dict(os.environ)
    if delegate == "gpu" and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env.setdefault("EGL_PLATFORM", "surfaceless")
    with tempfile.TemporaryDirectory() as scratch:
        stored = os.path.join(scratch, "images.npy")
        np.save(stored, np.asarray(images, dtype=np.uint8))
        spec = json.dumps({"file": str(path), "images": stored, "delegate": delegate})
        try:
            done = subprocess.run([str(python), "-c", _CLIENT, spec], capture_output=True,
                                  text=True, timeout=TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired as expired:
            return {"version": None, "error": f"no answer within {TIMEOUT_S} s",
                    "log": _text(expired.stderr)}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"version": None, "error": f"the client exited {done.returncode}: "
                f"{_last_line(done.stderr)}", "log": done.stderr}
    result = json.loads(lines[-1])
    if "error" in result:
        result["error"] = _reason(result["error"])
    return {**result, "log": done.stderr}


def _reason(message):
    """The cause in a MediaPipe error: the text after its last `failed: `, on one line."""
    cause = message.rsplit("failed: ", 1)[-1]
    return " ".join(cause.split()) or " ".join(message.split())


def _last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def main():
    try:
        for delegate in DELEGATES:
            print(f"{delegate}: {build(delegate)}")
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
