"""Kubeflow Pipelines packaging (compile / submit) of the same pipeline."""
