"""The paper's published figures (He et al. 2015, arXiv 1512.03385), for comparison only.

These are the numbers printed in the paper, not measurements of this code:
every report shows them in a column of their own, labelled "paper".
"""

# Table 6: CIFAR-10 test error (%) of the residual nets (ResNet-110: best of 5 runs).
# The plain nets' errors appear only as curves in Fig. 6, so they have no entry.
CIFAR10_TEST_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17,
                      "resnet56": 6.97, "resnet110": 6.43}

# Table 1: multiply-adds ("FLOPs") at 224x224, in units of 10^9.
IMAGENET_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8,
                  "resnet101": 7.6, "resnet152": 11.3}
