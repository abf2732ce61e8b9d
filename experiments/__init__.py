"""Experiments that check the paper's claims (He et al. 2015, arXiv 1512.03385, sec. 4).

    python -m experiments.degradation      # Fig. 6: plain nets degrade with depth, ResNets do not
    python -m experiments.cifar10_table    # Table 6: ResNet-20..110 on CIFAR-10 (GPU + archive)
    python -m experiments.block_table      # Fig. 5 / Table 1: basic vs bottleneck cost
    python -m experiments.readme_section   # docs/experiments/README_section.md from their JSON

Each writes JSON first and renders Markdown (and figures) from it.
"""
