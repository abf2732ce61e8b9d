"""Export a trained model: .tflite variants, evaluation, Edge TPU and Android files, reports."""
