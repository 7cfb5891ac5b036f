"""tfx-mtl: multi-task learning on TensorFlow Extended."""

__version__ = "0.1.0"
