"""The progress lines every command shows: each package's logger on stdout, message only.

Each stage logs a line per step with its elapsed time; `train.py`, `python -m
export` and the experiments show them as a terminal user expects.
"""

import logging
import sys

# The packages whose progress lines a command-line user sees.
# "__main__" is a module run with `python -m` (an experiment's own lines).
PROGRESS_LOGGERS = ("job", "rundir", "datasets", "training", "quantization", "export",
                    "report", "experiments", "__main__",
                    "resnet_keras")  # only downloads and conversions: where each file went


def show_progress(level=logging.INFO):
    """Shows this project's progress lines on stdout, message only."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in PROGRESS_LOGGERS:
        package_logger = logging.getLogger(name)
        package_logger.setLevel(level)
        if not package_logger.handlers:
            package_logger.addHandler(handler)
        package_logger.propagate = False
