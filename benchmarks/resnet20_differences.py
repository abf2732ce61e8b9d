"""`python -m benchmarks`' resnet20 differences: what each way our ResNet-20 differs costs its step.

The hand-built ResNet-20 (`benchmarks.models.hand_built_resnet20`) with one of
our network's differences at a time, and ours compiled the same way, timed in
turns; beside each, the ops its compiled train step executes, counted.
"""

import collections

from benchmarks.models import bare_training_model, hand_built_resnet20
from benchmarks.timing import paired_ratio, synthetic_pipeline, training_throughput

# Our resnet20 against the hand-built one, one difference at a time: {label: flags}.
RESNET20_DIFFERENCES = {
    "hand-built": {},
    "+ Normalization layer": {"normalization": True},
    "+ explicit padding": {"explicit_pad": True},
    "+ option-A shortcut": {"option_a": True},
    "+ all three": {"normalization": True, "explicit_pad": True, "option_a": True},
}


def train_step_ops(model, *, image_size, batch_size, classes):
    """The TensorFlow ops of `model`'s compiled train step, `{op type: count}`.

    Counted in its traced graph and the functions it calls (the step's
    forward, backward and optimizer update): what the step executes, which
    two models may be compared on without the noise of a timing.
    """
    data = synthetic_pipeline(image_size, batch_size, classes)
    if model.train_function is None:
        model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    graph = model.train_function.get_concrete_function(iter(data)).graph
    ops = collections.Counter(op.type for op in graph.get_operations())
    for function in graph.as_graph_def().library.function:
        ops.update(node.op for node in function.node_def)
    return dict(ops)


def resnet20_differences(*, batch_size, steps, repeats):
    """Train-step images/s of the hand-built ResNet-20 with each of our differences, and ours.

    All timed in turns (`training_throughput`); "ours bare" is our resnet20
    compiled as the hand-built one is.

    Returns:
        {label: `throughput` of its rounds, `ratio` (the median over rounds of
        its rate / the hand-built one's) and `ops` (the number of ops its
        train step executes, `train_step_ops`)}.
    """
    models = {label: hand_built_resnet20(image_size=32, classes=10, **flags)
              for label, flags in RESNET20_DIFFERENCES.items()}
    models["ours bare"] = bare_training_model("resnet20", image_size=32, classes=10)
    rates, _ = training_throughput(models, image_size=32, batch_size=batch_size, classes=10,
                                   steps=steps, repeats=repeats)
    return {label: dict(r, ratio=paired_ratio(r, rates["hand-built"]), ops=sum(
        train_step_ops(models[label], image_size=32, batch_size=batch_size,
                       classes=10).values())) for label, r in rates.items()}
