"""The datasets the nets train and are evaluated on (see `datasets.registry`).

`input_pipeline` serves a dataset's splits as seeded tf.data pipelines and `augmentation`
holds the training augmentations; `digits`,
`cifar`, `idx`, `folder` and `tfds` each read one source; `registry` maps names to them.
"""

from datasets.augmentation import AUGMENTATIONS
from datasets.input_pipeline import Dataset, keras_datasets_dir
from datasets.registry import DATASETS, check_dataset_name, load_dataset

__all__ = ["AUGMENTATIONS", "DATASETS", "Dataset", "check_dataset_name", "keras_datasets_dir",
           "load_dataset"]
