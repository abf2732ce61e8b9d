"""The export stage: .tflite variants, the .tflite reader, Edge TPU checks, Android bundles."""
