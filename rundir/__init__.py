"""What every stage shares about a run: its folder's files, safe model files, the run's models.

The ground floor of the flow: every stage (training, quantization, export,
report) imports it, and it imports none of them.
"""

from rundir.files import RunDir, replacing

__all__ = ["RunDir", "replacing"]
