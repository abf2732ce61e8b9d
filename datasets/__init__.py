"""The datasets the nets train and are evaluated on (see `datasets.pipeline`)."""

from datasets.pipeline import DATASETS, Dataset, keras_datasets_dir, load_dataset

__all__ = ["DATASETS", "Dataset", "keras_datasets_dir", "load_dataset"]
