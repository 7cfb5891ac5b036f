"""The runners: the same DAG on this machine (local) or compiled for Kubeflow Pipelines (kubeflow)."""
