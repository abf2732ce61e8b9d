"""The ResNet family as data: one row per network name (arXiv 1512.03385).

Table 1 gives the ImageNet nets, section 4.2 the CIFAR-10 nets (6n+2 layers),
He et al. 2016 (arXiv 1603.05027) the pre-activation v2 nets. Adding a depth
is adding one row.
"""

import dataclasses
from typing import Literal, get_args

BlockKind = Literal["basic", "bottleneck", "preact_bottleneck"]
StemKind = Literal["imagenet", "cifar"]
StrideBlock = Literal["first", "last"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What distinguishes one network of the family from another.

    Attributes:
        name: registry name, e.g. `resnet50`.
        block: `basic` (two 3x3 convs), `bottleneck` (1x1-3x3-1x1, 4x
            expansion) or `preact_bottleneck` (the v2 bottleneck).
        depths: blocks per stage, e.g. (3, 4, 6, 3).
        widths: filters per stage (the inner width of a bottleneck).
        stem: `imagenet` (7x7/2 conv + 3x3/2 max-pool, stages conv2..conv5)
            or `cifar` (3x3 conv, no pool, stages conv2..conv4).
        residual: False for the plain counterparts (shortcuts removed).
        keras_applications: name of the keras.applications builder with the
            same architecture and weight files, if any.
        stem_bn: the stem conv is followed by BN and ReLU. The v2 nets leave
            them to the first block's pre-activation.
        unstrided_stage: index of the one stage that keeps its input's
            resolution; every other stage halves it. 0 in the paper (the stem
            has already downsampled); -1 in keras.applications v2, which
            downsamples at the end of conv2..conv4 and leaves conv5 unstrided.
        stride_block: which block of a stage carries its stride: `first`
            (the paper) or `last` (keras.applications v2).
        post_bn: a BN and ReLU after the last stage (`post_bn`, `post_relu`),
            needed when the blocks end without an activation (v2).
    """

    name: str
    block: BlockKind
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem: StemKind
    residual: bool = True
    keras_applications: str | None = None
    stem_bn: bool = True
    unstrided_stage: int = 0
    stride_block: StrideBlock = "first"
    post_bn: bool = False

    def __post_init__(self):
        for field, kind in (("block", BlockKind), ("stem", StemKind),
                            ("stride_block", StrideBlock)):
            if getattr(self, field) not in get_args(kind):
                raise ValueError(f"{self.name}: {field}={getattr(self, field)!r} is not "
                                 f"valid; valid: {', '.join(get_args(kind))}.")
        if len(self.depths) != len(self.widths):
            raise ValueError(f"{self.name}: depths={self.depths!r} and widths={self.widths!r} "
                             f"must have one entry per stage.")
        if not -len(self.depths) <= self.unstrided_stage < len(self.depths):
            raise ValueError(f"{self.name}: unstrided_stage={self.unstrided_stage!r} is not "
                             f"the index of one of its {len(self.depths)} stages.")

    @property
    def family(self) -> str:
        """`v1` (ImageNet, post-activation), `v2` (pre-activation) or `cifar`."""
        if self.stem == "cifar":
            return "cifar"
        return "v2" if self.block == "preact_bottleneck" else "v1"

    @property
    def strides(self) -> tuple[int, ...]:
        """The downsampling stride of each stage, conv2 first."""
        unstrided = self.unstrided_stage % len(self.depths)
        return tuple(1 if stage == unstrided else 2 for stage in range(len(self.depths)))

    @property
    def expansion(self) -> int:
        return 1 if self.block == "basic" else 4

    @property
    def depth(self) -> int:
        """Weighted layers on the main path: stem conv + block convs + classifier."""
        convs_per_block = 2 if self.block == "basic" else 3
        return 1 + convs_per_block * sum(self.depths) + 1


_IMAGENET_WIDTHS = (64, 128, 256, 512)
_CIFAR_WIDTHS = (16, 32, 64)

_IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
# Where keras.applications' ResNetV2, whose weight files the v2 nets load, puts
# BN, ReLU and strides; He et al. 2016 (arXiv 1603.05027) stride a stage's first block.
_V2_PLACEMENT = dict(stem_bn=False, unstrided_stage=-1, stride_block="last", post_bn=True)


def _build_registry() -> dict[str, ModelSpec]:
    specs = []
    for depth, (block, depths) in _IMAGENET_DEPTHS.items():
        keras_name = f"ResNet{depth}" if block == "bottleneck" else None
        specs.append(ModelSpec(f"resnet{depth}", block, depths, _IMAGENET_WIDTHS,
                               "imagenet", keras_applications=keras_name))
        if block == "bottleneck":
            specs.append(ModelSpec(f"resnet{depth}v2", "preact_bottleneck", depths,
                                   _IMAGENET_WIDTHS, "imagenet",
                                   keras_applications=f"ResNet{depth}V2", **_V2_PLACEMENT))
        else:
            specs.append(ModelSpec(f"plain{depth}", block, depths, _IMAGENET_WIDTHS,
                                   "imagenet", residual=False))
    for depth in _CIFAR_DEPTHS:
        n = (depth - 2) // 6
        for prefix, residual in (("resnet", True), ("plain", False)):
            specs.append(ModelSpec(f"{prefix}{depth}", "basic", (n, n, n), _CIFAR_WIDTHS,
                                   "cifar", residual=residual))
    return {spec.name: spec for spec in specs}


REGISTRY: dict[str, ModelSpec] = _build_registry()


def list_models() -> list[str]:
    """Returns every registered model name, in registry order."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """Returns the spec of `name`.

    Raises:
        ValueError: the name is not registered; the message lists valid names.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown model name {name!r}. Valid names: {', '.join(REGISTRY)}."
        ) from None
