"""The ResNet family of He et al. 2015 (arXiv 1512.03385) in Keras 2 (tf_keras).

Examples:
    >>> import resnet_keras
    >>> model = resnet_keras.build_model("resnet20", classes=10)
"""

from resnet_keras.macs import count_macs
from resnet_keras.models import (
    PREPROCESSING,
    SHORTCUTS,
    VARIANTS,
    build_model,
    plain18,
    plain20,
    plain32,
    plain34,
    plain44,
    plain56,
    plain110,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet50v2,
    resnet56,
    resnet101,
    resnet101v2,
    resnet110,
    resnet152,
    resnet152v2,
)
from resnet_keras.registry import REGISTRY, ModelSpec, get_spec, list_models
from resnet_keras.weights import load_weights

__all__ = [
    "PREPROCESSING", "REGISTRY", "SHORTCUTS", "VARIANTS", "ModelSpec", "build_model",
    "count_macs", "get_spec", "list_models", "load_weights", "plain18", "plain20",
    "plain32", "plain34", "plain44", "plain56", "plain110", "resnet18", "resnet20",
    "resnet32", "resnet34", "resnet44", "resnet50", "resnet50v2", "resnet56",
    "resnet101", "resnet101v2", "resnet110", "resnet152", "resnet152v2",
]
