"""Runs train.py and kills it with SIGKILL at one point, for tests/test_reliability.py and the
multi-worker tests of tests/test_distribute.py.

    python tests/kill_at.py during_save@2 --stages train --run-dir /tmp/run ...
    python tests/kill_at.py --weights-to /tmp/w1.npz none --stages train ...

The first argument is `<point>` or `<point>@<n>` (the n-th time the point is
reached, 1 by default), after `--weights-to FILE` if given; the rest are
train.py's arguments. With `--weights-to`, the weights every `fit` ends with
are written to FILE (numpy `.npz`, one array per weight, the last `fit`'s
kept): a multi-worker job's workers other than the chief keep no model file.
The points are patched in here, around tf_keras and `rundir.model_files`, so
production code holds no test hook:

- `none`: never killed;

- `during_save`: a model file is written whole to its temporary file
  (`rundir.replacing`'s `.partial-<name>`) but not yet renamed over the old one;
- `during_evaluation`: an evaluation begins (`CallbackList.on_test_begin`: the
  validation of an epoch, before its history row, checkpoints and backup);
- `after_history_row`: `CSVLogger` has written an epoch's row, before the
  epoch's checkpoints and backup;
- `during_step`: a training step has run, before its callbacks (the NaN check,
  a mid-epoch backup): counted over the whole process, head phase included.
"""

import contextlib
import os
import signal
import sys

POINTS = ("none", "during_save", "during_evaluation", "after_history_row", "during_step")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counter(point, n):
    """A function that kills this process the n-th time it is called."""
    calls = [0]

    def reached():
        calls[0] += 1
        if calls[0] == n:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    reached.__name__ = f"kill_{point}"
    return reached


def _install(point, reached):
    """Patches the code that reaches `point` to call `reached` there."""
    from resnet_keras.backend import keras
    from rundir import model_files

    if point == "none":
        return
    if point == "during_save":
        replacing = model_files.replacing

        @contextlib.contextmanager
        def killing_replacing(path):
            with replacing(path) as partial:
                yield partial
                reached()  # written to `partial`, not yet renamed to `path`

        model_files.replacing = killing_replacing
    elif point == "during_evaluation":
        on_test_begin = keras.callbacks.CallbackList.on_test_begin

        def killing_on_test_begin(self, logs=None):
            reached()
            on_test_begin(self, logs)

        keras.callbacks.CallbackList.on_test_begin = killing_on_test_begin
    elif point == "after_history_row":
        on_epoch_end = keras.callbacks.CSVLogger.on_epoch_end

        def killing_on_epoch_end(self, epoch, logs=None):
            on_epoch_end(self, epoch, logs)
            reached()

        keras.callbacks.CSVLogger.on_epoch_end = killing_on_epoch_end
    elif point == "during_step":
        on_train_batch_end = keras.callbacks.CallbackList.on_train_batch_end

        def killing_on_train_batch_end(self, batch, logs=None):
            reached()
            on_train_batch_end(self, batch, logs)

        keras.callbacks.CallbackList.on_train_batch_end = killing_on_train_batch_end
    else:
        raise ValueError(f"Unknown kill point {point!r}. Valid points: {', '.join(POINTS)}.")


def _record_weights(path):
    """Patches `fit` to write the weights it ends with to `path` (every worker must read them)."""
    import numpy as np

    from resnet_keras.backend import keras

    fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        np.savez(path, *self.get_weights())
        return history

    keras.Model.fit = recording_fit


def main(argv):
    weights_to = None
    if argv[0] == "--weights-to":
        weights_to, argv = argv[1], argv[2:]
    point, _, n = argv[0].partition("@")
    sys.path.insert(0, ROOT)
    _install(point, _counter(point, int(n or 1)))
    if weights_to:
        _record_weights(weights_to)
    import train

    return train.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
