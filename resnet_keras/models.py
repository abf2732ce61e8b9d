"""Builds every network of the ResNet family from its registry row (arXiv 1512.03385).

`build_model(name, **options)` is the one builder; each public constructor
(`resnet50`, `resnet20`, `plain56`, ...) is one line over it. Models take raw
RGB pixels in [0, 255]: the normalization their weights expect is a layer.
"""

from resnet_keras import weights as weights_lib
from resnet_keras.backend import keras
from resnet_keras.blocks import Layout, stack
from resnet_keras.registry import get_spec

layers = keras.layers

VARIANTS = {"v1": ("v1", "v1.5"), "v2": ("v2",), "cifar": ("cifar",)}
SHORTCUTS = ("A", "B")
POOLINGS = (None, "avg", "max")

# Mean and std of each weights family's expected input, in RGB order and in
# [0, 255] units. `caffe` also reorders channels to BGR (keras.applications v1).
PREPROCESSING = {
    "caffe": ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    "tf": ((127.5,) * 3, (127.5,) * 3),
    "torch": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
}
_DEFAULT_PREPROCESSING = {"v1": "caffe", "v1.5": "torch", "v2": "tf", "cifar": "tf"}
_MIN_SIZE = {"imagenet": 32, "cifar": 8}


def _layout(variant, *, shortcut, bn_momentum, kernel_regularizer, zero_init_last_bn):
    """The implementation details each variant fixes (see `Layout`)."""
    keras_style = variant in ("v1", "v2")
    return Layout(
        conv_bias=keras_style,
        bn_epsilon=1.001e-5 if keras_style else 1e-5,
        bn_momentum=bn_momentum,
        stride_on_3x3=variant != "v1",
        shortcut=shortcut,
        kernel_regularizer=kernel_regularizer,
        zero_init_last_bn=zero_init_last_bn,
    )


def preprocessing_layers(x, kind):
    """Maps raw RGB pixels in [0, 255] to what a weights family expects.

    Only standard layers: a `Normalization` with fixed statistics, and for
    `caffe` a channel reversal to BGR built from three channel crops (a
    `Cropping2D` told its input is channels-first crops the last axis).

    Args:
        x: input tensor, raw RGB in [0, 255].
        kind: `caffe` (keras.applications v1: BGR, mean subtracted),
            `tf` (keras.applications v2 and CIFAR: scaled to [-1, 1]) or
            `torch` (torchvision: ImageNet mean and std).

    Returns:
        The normalized tensor.
    """
    mean, std = PREPROCESSING[kind]
    x = layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                             name="preprocess_normalize")(x)
    if kind == "caffe":
        channels = [layers.Cropping2D(((0, 0), (c, 2 - c)), data_format="channels_first",
                                      name=f"preprocess_channel{c}")(x) for c in (2, 1, 0)]
        x = layers.Concatenate(name="preprocess_bgr")(channels)
    return x


def fold_channel_reversal(model):
    """A copy of a `caffe` model whose first conv takes RGB, without the BGR reordering.

    Reversing the channels before a conv equals reversing its kernel's input
    channels, so the three crops and the concatenation `preprocessing_layers`
    builds can leave the graph. Weight files keep the keras.applications
    layout, so models are built with the reordering; export and QAT fold it
    (in LiteRT the int8 crops and concatenation are slow channel copies;
    `python -m benchmarks` times the normalization that is left). Outputs
    match to float rounding.

    Args:
        model: a functional tf_keras model, e.g. from `build_model`.

    Returns:
        A new model with the same name and weights, but without
        `preprocess_channel*`/`preprocess_bgr` and with the kernel of each
        conv they fed (through zero padding) reversed on its input-channel
        axis; `model` itself when there is nothing to fold: no
        `preprocess_bgr` layer, or the reordered pixels reach something other
        than a Conv2D (a model output, say).
    """
    if isinstance(model, keras.Sequential):
        return model
    config = model.get_config()
    consumers = {}
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                consumers.setdefault(inbound[0], []).append(entry)
    if "preprocess_bgr" not in consumers:
        return model
    outputs = {output[0] for output in config["output_layers"]}
    convs, todo = [], ["preprocess_bgr"]
    while todo:
        name = todo.pop()
        if name in outputs:
            return model
        for entry in consumers[name]:
            if entry["class_name"] == "ZeroPadding2D":
                todo.append(entry["name"])
            elif entry["class_name"] == "Conv2D":
                convs.append(entry["name"])
            else:
                return model

    reorder = {"preprocess_bgr"} | {f"preprocess_channel{c}" for c in range(3)}
    crop = next(entry for entry in config["layers"] if entry["name"] == "preprocess_channel0")
    source = crop["inbound_nodes"][0][0][0]  # the normalized RGB pixels
    config["layers"] = [entry for entry in config["layers"] if entry["name"] not in reorder]
    for entry in consumers["preprocess_bgr"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                if inbound[0] == "preprocess_bgr":
                    inbound[0] = source
    clone = keras.Model.from_config(config)
    for layer in clone.layers:
        weights = model.get_layer(layer.name).get_weights()
        if layer.name in convs:
            weights[0] = weights[0][:, :, ::-1, :]
        layer.set_weights(weights)
    return clone


def _check_options(spec, *, variant, shortcut, include_top, weights, input_shape,
                   pooling, classes):
    family_variants = VARIANTS[spec.family]
    if variant not in family_variants:
        raise ValueError(f"variant={variant!r} is not valid for {spec.name}; "
                         f"valid: {', '.join(family_variants)}.")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut={shortcut!r} is not valid; valid: {', '.join(SHORTCUTS)}.")
    if spec.stem == "imagenet" and shortcut != "B":
        raise ValueError(f"{spec.name} uses projection shortcuts (option B) as in the "
                         f"paper's Table 3-4 nets; shortcut={shortcut!r} is for CIFAR nets.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not valid; valid: None, 'avg', 'max'.")
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"weights='imagenet' with include_top=True needs classes=1000, "
                         f"got classes={classes}.")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) for RGB pixels, "
                         f"got {input_shape!r}.")
    min_size = _MIN_SIZE[spec.stem]
    for size in input_shape[:2]:
        if size is not None and size < min_size:
            raise ValueError(f"{spec.name} needs inputs of at least {min_size}x{min_size} "
                             f"pixels, got input_shape={tuple(input_shape)!r}.")


def _bn_relu(x, *, layout, name):
    x = layers.BatchNormalization(epsilon=layout.bn_epsilon, momentum=layout.bn_momentum,
                                  name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _stem(x, spec, *, layout):
    """`conv1` (and `pool1` for the ImageNet nets): Table 1, or sec. 4.2's 3x3 conv."""
    conv = dict(use_bias=layout.conv_bias, kernel_regularizer=layout.kernel_regularizer,
                name="conv1_conv")
    if spec.stem == "imagenet":
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = layers.Conv2D(64, 7, strides=2, **conv)(x)
    else:
        x = layers.Conv2D(spec.widths[0], 3, padding="same", **conv)(x)
    if spec.stem_bn:
        x = _bn_relu(x, layout=layout, name="conv1")
    if spec.stem == "imagenet":
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    return x


def _top(x, *, include_top, pooling, classes, classifier_activation, kernel_regularizer):
    """The classifier (`avg_pool`, `predictions`), or the pooling `include_top=False` asks for."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        # float32 even under a mixed-precision policy: a float16 softmax is unstable.
        return layers.Dense(classes, activation=classifier_activation,
                            kernel_regularizer=kernel_regularizer, dtype="float32",
                            name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def build_model(name, *, include_top=True, weights=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", variant=None,
                shortcut=None, preprocessing=None, bn_momentum=0.9,
                kernel_regularizer=None, zero_init_last_bn=False):
    """Builds a network of the ResNet family by registry name.

    Args:
        name: str, a name from `list_models()`, e.g. `resnet50`, `resnet20`, `plain56`.
        include_top: bool, end with global average pooling and a `predictions`
            dense layer.
        weights: None (random init), `imagenet` (the keras.applications file
            from the Keras cache, downloaded there on first use; v1 and v2
            ResNet-50/101/152 only), or a path to an `.h5` weights file in
            this model's layout.
        input_shape: (height, width, 3); default 224x224 (ImageNet nets) or
            32x32 (CIFAR nets). Any size >= 32 (>= 8 for CIFAR nets) works.
        pooling: None, `avg` or `max`: the pooling applied when
            `include_top=False`.
        classes: int, number of classes of the top; default 1000 (ImageNet
            nets) or 10 (CIFAR nets).
        classifier_activation: activation of the top, e.g. `softmax` or None
            for logits.
        variant: `v1` or `v1.5` for ResNet-18..152 and plain18/34. Default
            `v1`: it is the paper's network (stride on the bottleneck's first
            1x1) and the layout of keras.applications weights. `v1.5` is the
            torchvision layout (stride on the 3x3, ~0.5 points more accurate at
            the same parameters, no conv biases, ImageNet mean/std input):
            choose it for torchvision weights or for new training. The v2 nets
            are `v2`, the CIFAR nets `cifar`.
        shortcut: `A` (parameter-free: strided identity with zero-padded
            channels, the paper's CIFAR choice, default there) or `B` (1x1
            projection) where a block changes shape. ImageNet nets use `B`.
        preprocessing: `caffe`, `tf` or `torch` (see `PREPROCESSING`); default
            follows the variant's weights: caffe for v1, torch for v1.5, tf
            for v2 and the CIFAR nets.
        bn_momentum: float, BatchNorm moving-average momentum. Default 0.9
            (PyTorch's 0.1): Keras's 0.99 lags behind on short runs.
        kernel_regularizer: regularizer for every kernel (weight decay).
        zero_init_last_bn: bool, zero-init the last BN gamma of each block.

    Returns:
        A tf_keras functional `Model` taking raw RGB pixels in [0, 255].

    Raises:
        ValueError: an unknown name or invalid option; the message lists the
            valid values.
        FileNotFoundError: `weights='imagenet'`, the file is not cached and
            downloads are off (`resnet_keras.fetch`).
        resnet_keras.fetch.DownloadError: its download failed or did not match its hash.

    Examples:
        >>> model = build_model("resnet20", classes=10)
        >>> model.output_shape
        (None, 10)
    """
    spec = get_spec(name)
    variant = variant or VARIANTS[spec.family][0]
    shortcut = shortcut or ("A" if spec.stem == "cifar" else "B")
    classes = classes if classes is not None else (1000 if spec.stem == "imagenet" else 10)
    input_shape = tuple(input_shape or ((224, 224, 3) if spec.stem == "imagenet"
                                        else (32, 32, 3)))
    _check_options(spec, variant=variant, shortcut=shortcut, include_top=include_top,
                   weights=weights, input_shape=input_shape, pooling=pooling,
                   classes=classes)
    preprocessing = preprocessing or _DEFAULT_PREPROCESSING[variant]
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing={preprocessing!r} is not valid; "
                         f"valid: {', '.join(PREPROCESSING)}.")
    layout = _layout(variant, shortcut=shortcut, bn_momentum=bn_momentum,
                     kernel_regularizer=kernel_regularizer,
                     zero_init_last_bn=zero_init_last_bn)

    inputs = layers.Input(shape=input_shape, name="input")
    x = preprocessing_layers(inputs, preprocessing)
    x = _stem(x, spec, layout=layout)
    for stage, (filters, blocks, stride) in enumerate(
            zip(spec.widths, spec.depths, spec.strides), start=2):
        x = stack(x, filters, blocks, block=spec.block, stride=stride,
                  stride_block=spec.stride_block, layout=layout, residual=spec.residual,
                  name=f"conv{stage}")
    if spec.post_bn:
        x = _bn_relu(x, layout=layout, name="post")
    x = _top(x, include_top=include_top, pooling=pooling, classes=classes,
             classifier_activation=classifier_activation, kernel_regularizer=kernel_regularizer)
    model_name = name if variant in ("v1", "v2", "cifar") else f"{name}_{variant}"
    model = keras.Model(inputs, x, name=model_name.replace(".", "_"))
    if weights == "imagenet":
        weights_lib.load_weights(model, weights_lib.imagenet_weights_path(
            spec, variant=variant, include_top=include_top))
    elif weights is not None:
        weights_lib.load_weights(model, weights)
    return model


def resnet18(**kwargs): return build_model("resnet18", **kwargs)
def resnet34(**kwargs): return build_model("resnet34", **kwargs)
def resnet50(**kwargs): return build_model("resnet50", **kwargs)
def resnet101(**kwargs): return build_model("resnet101", **kwargs)
def resnet152(**kwargs): return build_model("resnet152", **kwargs)
def resnet50v2(**kwargs): return build_model("resnet50v2", **kwargs)
def resnet101v2(**kwargs): return build_model("resnet101v2", **kwargs)
def resnet152v2(**kwargs): return build_model("resnet152v2", **kwargs)
def resnet20(**kwargs): return build_model("resnet20", **kwargs)
def resnet32(**kwargs): return build_model("resnet32", **kwargs)
def resnet44(**kwargs): return build_model("resnet44", **kwargs)
def resnet56(**kwargs): return build_model("resnet56", **kwargs)
def resnet110(**kwargs): return build_model("resnet110", **kwargs)
def plain18(**kwargs): return build_model("plain18", **kwargs)
def plain34(**kwargs): return build_model("plain34", **kwargs)
def plain20(**kwargs): return build_model("plain20", **kwargs)
def plain32(**kwargs): return build_model("plain32", **kwargs)
def plain44(**kwargs): return build_model("plain44", **kwargs)
def plain56(**kwargs): return build_model("plain56", **kwargs)
def plain110(**kwargs): return build_model("plain110", **kwargs)
