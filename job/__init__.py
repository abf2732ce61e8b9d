"""The job: its configuration (`job.config`) and the stage runner (`job.stages`).

The top of the flow, beside the command line (`train.py`): it imports every
stage and no stage imports it.
"""
