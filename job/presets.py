"""The named presets of the job's configuration: the paper's recipes and this project's jobs.

Data only, kept apart from the schema (`job.config`), as timm keeps its
pretrained configurations apart from the architectures. `job.config.resolve`
applies one over the defaults and checks it like any override;
tests/test_config.py holds every preset to the ranges.
"""

# The paper's CIFAR-10 recipe (sec. 4.2): batch 128, lr 0.1 divided by 10 at
# 32k and 48k of 64k iterations, weight decay 1e-4, momentum 0.9 (the default).
# With 45k training images one epoch is 351.6 iterations: 32k, 48k, 64k = 91,
# 136.5, 182 epochs.
_PAPER_CIFAR_TRAIN = {"batch_size": 128, "reference_batch_size": 128, "learning_rate": 0.1,
                      "weight_decay": 1e-4, "schedule": "step"}
_PAPER_CIFAR_EPOCHS = {"epochs": 182, "lr_decay_epochs": (91, 136.5)}

# Each preset is a set of overrides of `job.config`'s defaults, nested by section.
PRESETS: dict[str, dict] = {
    # The default job: the embedded digits on 2 CPU cores (README, "Results").
    "digits": {},
    # Paper sec. 4.2, with its 45k/5k train/val split.
    "cifar10-paper": {
        "data": {"dataset": "cifar10", "val_split": 5000},
        "model": {"name": "resnet20"},
        "train": {**_PAPER_CIFAR_TRAIN, **_PAPER_CIFAR_EPOCHS, "save_every_steps": 500},
        "qat": {"epochs": 5, "learning_rate": 0.001, "batch_size": 128},
    },
    # Paper sec. 3.4: batch 256, lr 0.1 (scaled linearly with the global batch,
    # Goyal et al. arXiv 1706.02677), / 10 at epochs 30 and 60, 90 epochs,
    # weight decay 1e-4, momentum 0.9, ImageNet folder layout.
    "imagenet-paper": {
        "data": {"dataset": "folder", "image_size": 224},
        "model": {"name": "resnet50", "variant": "v1.5"},
        "train": {"epochs": 90, "batch_size": 256, "reference_batch_size": 256,
                  "learning_rate": 0.1, "weight_decay": 1e-4, "schedule": "step",
                  "lr_decay_epochs": (30, 60), "save_every_steps": 1000},
        "qat": {"epochs": 1, "learning_rate": 1e-4, "batch_size": 64},
        "export": {"calibration_size": 500},
    },
    # Transfer learning from keras.applications' ImageNet weights, as the Keras
    # transfer-learning guide does it: one epoch training only the new top on the
    # frozen backbone (BatchNorm in inference mode), then every layer for a few
    # epochs at a rate below the paper's from-scratch 0.025 at batch 64 (its 0.1
    # at 256, scaled), with cosine decay: the pretrained features are adjusted,
    # not relearnt.
    "finetune": {
        "data": {"dataset": "folder", "image_size": 224},
        "model": {"name": "resnet50", "weights": "imagenet"},
        "train": {"epochs": 5, "batch_size": 64, "reference_batch_size": 64,
                  "learning_rate": 0.01, "weight_decay": 1e-4, "schedule": "cosine",
                  "head_epochs": 1, "head_learning_rate": 0.1, "save_every_steps": 200},
        "qat": {"epochs": 1, "learning_rate": 1e-4, "batch_size": 64},
    },
    # Fashion-MNIST (the real 60,000/10,000 images; `apt-get install
    # dataset-fashion-mnist`): ResNet-20 on the 28x28 images padded to 32x32,
    # pad-4 crop and flip, cosine decay, 24 epochs (the committed run and its
    # timing: docs/results/fashion_mnist/). QAT one epoch at a 20x lower rate.
    "fashion-mnist": {
        "data": {"dataset": "fashion_mnist"},
        "model": {"name": "resnet20"},
        "train": {"epochs": 24, "batch_size": 128, "reference_batch_size": 128,
                  "learning_rate": 0.1, "weight_decay": 5e-4, "schedule": "cosine",
                  "warmup_epochs": 1, "save_every_steps": 200},
        "qat": {"epochs": 1, "learning_rate": 0.005, "batch_size": 128},
    },
    # The degradation experiment (paper sec. 4.2, Fig. 6): one recipe for every
    # net, the step schedule dividing by 10 at 50% and 75% of the epochs (the
    # paper's 32k and 48k of 64k iterations) after a warmup rising linearly from
    # a tenth of the rate (the paper's ResNet-110 holds the tenth, then jumps),
    # so that the deep nets survive the peak rate. On digits, lr 0.05 at batch 64 is
    # the paper's 0.1 at batch 128 scaled linearly (Goyal et al., arXiv
    # 1706.02677); at 0.1 ResNet-56 did not start learning within these few
    # hundred steps. No augmentation: degradation is an optimization effect,
    # seen in the training error.
    "degradation-digits": {
        "stages": ("train",),
        "data": {"augment": False},
        "train": {"epochs": 10, "batch_size": 64, "reference_batch_size": 64,
                  "learning_rate": 0.05, "weight_decay": 1e-4, "schedule": "step",
                  "lr_decay_epochs": (5, 7.5), "warmup_epochs": 1.0},
    },
    # Fashion-MNIST, hard enough for depth to matter: the paper's recipe with
    # pad-crop-flip, 20 epochs, /10 at 50% and 75% (docs/experiments/ holds the
    # committed run and its timing). The warmup is counted in steps, the paper's
    # 400 iterations, whatever the training subset: one epoch of a 10,000-image
    # subset (79 steps at a tenth) left ResNet-56 at 88% training error when
    # the rate jumped to 0.1.
    "degradation-fashion-mnist": {
        "stages": ("train",),
        "data": {"dataset": "fashion_mnist"},
        "train": {**_PAPER_CIFAR_TRAIN, "epochs": 20, "lr_decay_epochs": (10, 15),
                  "warmup_steps": 400, "save_every_steps": 500},
    },
    # The paper's sec. 4.2 recipe on all 50k training images, pad-crop-flip.
    "degradation-cifar10": {
        "stages": ("train",),
        "data": {"dataset": "cifar10"},
        "train": {**_PAPER_CIFAR_TRAIN, **_PAPER_CIFAR_EPOCHS, "warmup_steps": 400,
                  "save_every_steps": 500},
    },
}
