"""tfx-mtl: multi-task learning on TensorFlow Extended."""
import os

# tf.keras is Keras 3 in this project. TensorFlow Transform switches a process to
# Keras 2 (tf_keras) when it is imported before anything touches tf.keras, which
# would make the model's Keras depend on import order; pin the choice first.
# (TFT keeps using tf_keras internally for its own layers either way.)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")

__version__ = "0.1.0"
