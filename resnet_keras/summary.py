"""One row per network and variant of the family: parameters, multiply-adds, depth, shapes.

What `python -m resnet_keras summary` prints and what `python -m
tools.update_readme` renders into the model table of docs/training.md; the
multiply-adds are paper Table 1's "FLOPs" (arXiv 1512.03385).
"""

from resnet_keras.macs import count_macs
from resnet_keras.models import SHORTCUTS, VARIANTS, build_model
from resnet_keras.registry import get_spec, list_models


def _variants(name):
    """(build_model's keyword, value) for each variant of `name`."""
    spec = get_spec(name)
    if spec.family == "cifar":
        return [("shortcut", s) for s in SHORTCUTS]
    return [("variant", v) for v in VARIANTS[spec.family]]


def summary_rows(names=None) -> list[dict]:
    """Builds each model and variant and measures it.

    Args:
        names: list of registry names; None means all of them.

    Returns:
        list of dicts, one per model and variant: `name`, `variant`, `params`,
        `trainable_params`, `macs` (multiply-adds), `depth`, and the
        `input_shape` and `output_shape` at the model's default input.

    Raises:
        ValueError: a name not in the registry (its message lists the names).

    Example:
        >>> [(r["variant"], r["params"]) for r in summary_rows(["resnet20"])]
        [('A', 273658), ('B', 274042)]
    """
    rows = []
    for name in names or list_models():
        for option, value in _variants(name):
            model = build_model(name, **{option: value})
            rows.append({
                "name": name,
                "variant": value,
                "params": model.count_params(),
                "trainable_params": int(sum(w.shape.num_elements()
                                            for w in model.trainable_weights)),
                "macs": count_macs(model),
                "depth": get_spec(name).depth,
                "output_shape": list(model.output_shape[1:]),
                "input_shape": list(model.input_shape[1:]),
            })
    return rows
