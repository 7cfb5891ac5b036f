"""Runs the pipeline locally: LocalDagRunner, SQLite MLMD, Beam DirectRunner.

Layout of an output directory (default ``./runs``):
  ``pipeline_root/``    TFX artifacts of every component, by component and execution
  ``metadata.sqlite``   the MLMD store (lineage, caching)
  ``serving_model/<pipeline>/<version>/``  models pushed by Pusher
  ``logs/run-<time>.log``  the full TFX/Beam/TensorFlow log of each run
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, TextIO

from tfx_mtl import data as data_lib
from tfx_mtl import task_spec

_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."


@dataclasses.dataclass(frozen=True)
class RunPaths:
    output_dir: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model")

    @property
    def logs(self) -> str:
        return os.path.join(self.output_dir, "logs")


class ComponentProgress(logging.Handler):
    """Prints each component as LocalDagRunner starts and finishes it.

    LocalDagRunner logs exactly these two records around every component; we
    match their format strings, not the rendered text.
    """

    def __init__(self, out: TextIO):
        super().__init__(level=logging.INFO)
        self.out = out
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg not in (_RUNNING, _FINISHED) or not record.args:
            return
        node = record.args[0]
        if record.msg == _RUNNING:
            self.started[node] = time.monotonic()
            self.out.write(f"  {node:<22} started\n")
        else:
            seconds = time.monotonic() - self.started.get(node, time.monotonic())
            self.out.write(f"  {node:<22} finished in {seconds:6.1f}s\n")
        self.out.flush()


def pipeline_name(spec: task_spec.TaskSpec) -> str:
    return f"tfx-mtl-{spec.name}".replace("_", "-")


def run(*, spec_path: str | None = None, data: str | None = None, output_dir: str = "runs",
        train_steps: int = 1000, eval_steps: int = 50, trainer_config=None,
        out: TextIO = sys.stdout) -> dict[str, Any]:
    """Validates the inputs, runs the whole DAG and returns the run summary."""
    data = data or data_lib.bundled_taxi_csv()
    spec_path = spec_path or data_lib.bundled_spec()
    if train_steps < 1:
        raise ValueError(f"--train-steps must be at least 1, got {train_steps}")
    # Refuse a bad spec or data before anything heavy is imported or run.
    spec = task_spec.load(spec_path, columns=data_lib.csv_columns(data))

    from tfx import v1 as tfx  # heavy imports only once the inputs are known good
    from tfx_mtl.models.trainer import TrainerConfig
    from tfx_mtl.pipeline import pipeline as pipeline_lib
    from tfx_mtl.pipeline import summary as summary_lib

    paths = RunPaths(os.path.abspath(output_dir))
    os.makedirs(paths.logs, exist_ok=True)
    log_file = os.path.join(paths.logs, time.strftime("run-%Y%m%d-%H%M%S.log"))
    name = pipeline_name(spec)
    pipeline = pipeline_lib.create_pipeline(
        pipeline_name=name,
        pipeline_root=paths.pipeline_root,
        data=pipeline_lib.DataSource.from_path(data),
        spec=spec,
        serving_model_dir=os.path.join(paths.serving_model_dir, name),
        train_steps=train_steps,
        eval_steps=eval_steps,
        trainer_config=trainer_config or TrainerConfig(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            paths.metadata),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])

    out.write(f"tfx-mtl: pipeline {name!r} on {data}\n"
              f"  spec {spec_path}: tasks {', '.join(spec.task_names)}\n"
              f"  output {paths.output_dir} (full log: {log_file})\n")
    out.flush()
    progress = ComponentProgress(out)
    started = time.monotonic()
    with _logging_to(log_file, progress):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    out.write(f"  pipeline finished in {time.monotonic() - started:.1f}s\n")
    summary = summary_lib.collect(paths.metadata, name, spec, paths.output_dir)
    summary_lib.render(summary, spec, out)
    return summary


class _logging_to:
    """Sends all Python logging to a file and component progress to the terminal."""

    def __init__(self, log_file: str, progress: logging.Handler):
        self.log_file, self.progress = log_file, progress

    def __enter__(self):
        root = logging.getLogger()
        self.saved = (root.handlers[:], root.level)
        self.file_handler = logging.FileHandler(self.log_file)
        self.file_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"))
        root.handlers = [self.file_handler, self.progress]
        root.setLevel(logging.INFO)
        logging.getLogger("absl").setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.handlers, level = self.saved
        root.setLevel(level)
        self.file_handler.close()
        return False
