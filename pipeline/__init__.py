"""The TFX pipeline: its definition, local runner and run summary."""
