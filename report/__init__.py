"""The report stage: LiteRT evaluation, per-layer diagnosis, the quantized-accuracy report."""
