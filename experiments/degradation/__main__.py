"""`python -m experiments.degradation`: the command of experiments/degradation/command.py."""

import sys

from experiments.degradation.command import main

if __name__ == "__main__":
    sys.exit(main())
