"""Custom TFX components of the multi-task pipeline."""
