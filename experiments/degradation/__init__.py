"""Degradation (arXiv 1512.03385, sec. 4.2, Fig. 6): deeper plain nets train worse, ResNets do not.

    python -m experiments.degradation --help

`command` sets the nets up, trains the missing ones and writes the outputs (its
docstring lists the commands); `train` trains one net and measures its error
curves; `verdict` decides, as data, which pairs of nets reproduce the paper's
claims; `render` writes curves.csv, results.md and degradation.png from the JSON.
"""
