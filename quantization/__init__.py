"""Quantization of trained ResNets; the float models in `resnet_keras` stay untouched."""
