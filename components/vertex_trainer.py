"""VertexMtlTrainer: MtlTrainer run as a Vertex AI custom job (several workers or machines).

The Trainer's ``custom_config`` holds the job (``ai_platform_training_args``: worker
pools, machines, accelerators, the image). TFX's AI Platform trainer extension
submits it and waits; every replica runs :class:`~tfx_mtl.components.mtl_trainer.Executor`
with a ``TF_CONFIG``, so several workers train under MultiWorkerMirroredStrategy.
Kept apart from ``mtl_trainer`` because the extension's imports (the Vertex AI
client) cost every Trainer about two seconds when they are not needed.
"""
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

from tfx_mtl.components.mtl_trainer import Executor, MtlTrainer


class VertexTrainingExecutor(vertex_executor.GenericExecutor):
    """Runs :class:`Executor` as a Vertex AI custom job (``ai_platform_training_args`` in
    ``custom_config``: worker pools, machines, accelerators); each replica gets a
    ``TF_CONFIG``, so several workers train under MultiWorkerMirroredStrategy."""

    def _GetExecutorClass(self):
        return Executor


class VertexMtlTrainer(MtlTrainer):
    """MtlTrainer that trains as a Vertex AI custom job (several workers or machines)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexTrainingExecutor)
