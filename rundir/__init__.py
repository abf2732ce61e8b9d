"""What every stage shares about a run: its folder's files (`files`), safe model files
and the run's own models (`model_files`), cluster workers (`cluster`), JSON documents
that must hold a mapping (`json_documents`).

The ground floor of the flow: every stage (training, quantization, export,
report) imports it, and it imports none of them.
"""

from rundir.files import RunDir, replacing

__all__ = ["RunDir", "replacing"]
