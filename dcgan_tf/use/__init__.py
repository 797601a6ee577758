"""Using a trained generator: --generate, --visualize/--interpolate/--report, --export/--tflite, TF1 import."""
