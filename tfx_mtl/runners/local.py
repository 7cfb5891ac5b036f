"""The local runner: the pipeline on this machine with LocalDagRunner, SQLite MLMD and
Beam's DirectRunner, then the per-task summary.

The output directory is laid out as :class:`tfx_mtl.results.metadata.RunPaths`
describes; one run at a time holds it (:mod:`run_lock`), and first puts right what a
killed run left there (:mod:`recovery`). The Kubeflow runner
(:mod:`tfx_mtl.runners.kubeflow`) builds the same DAG
(:func:`tfx_mtl.pipeline.pipeline.create_pipeline`) for a cluster.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Sequence, TextIO

from tfx_mtl import data as data_lib
from tfx_mtl import label_checks, log_capture, naming, run_parameters, task_spec
from tfx_mtl.errors import InputError
from tfx_mtl.results import metadata as metadata_lib
from tfx_mtl.runners import beam_runner as _beam_runner
from tfx_mtl.runners import recovery, run_lock

_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED = "A cached execution %d is used."  # TFX's launcher, on a cache hit


class PipelineFailed(RuntimeError):
    """A component failed; names it and the log file that holds the traceback."""

    def __init__(self, component: str | None, error: Exception, log_file: str):
        self.component, self.error, self.log_file = component, error, log_file
        where = f"component {component} failed" if component else "the pipeline failed"
        super().__init__(f"{where}: {type(error).__name__}: {error}\n"
                         f"  (full traceback in {log_file})")


class ComponentProgress(logging.Handler):
    """Prints each component as LocalDagRunner starts and finishes it.

    LocalDagRunner logs exactly these two records around every component, and
    TFX's launcher one in between when it reuses a cached execution; we match
    their format strings, not the rendered text.
    """

    def __init__(self, out: TextIO):
        super().__init__(level=logging.INFO)
        self.out = out
        self.started: dict[str, float] = {}
        self.running: str | None = None  # started, not yet finished
        self.cached = False  # the running component reused a cached execution

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _CACHED:
            self.cached = True
            return
        if record.msg not in (_RUNNING, _FINISHED) or not record.args:
            return
        node = record.args[0]
        if record.msg == _RUNNING:
            self.running, self.cached = node, False
            self.started[node] = time.monotonic()
            self.out.write(f"  {node:<22} started\n")
        else:
            self.running = None
            seconds = time.monotonic() - self.started.get(node, time.monotonic())
            state = "cached (reused a previous run's outputs)" if self.cached else "finished"
            self.out.write(f"  {node:<22} {state} in {seconds:6.1f}s\n")
        self.out.flush()


def run(*, spec_path: str | None = None, data: str | None = None, output_dir: str = "runs",
        train_steps: int = run_parameters.DEFAULT_TRAIN_STEPS, eval_steps: int = 50,
        trainer_options: dict[str, Any] | None = None, cpu_replicas: int | None = None,
        baselines: str | None = None, seeds: int | None = None,
        beam_runner: str | None = None, beam_workers: int | None = None,
        dask_scheduler: str | None = None, beam_args: Sequence[str] = (),
        out: TextIO | None = None) -> dict[str, Any]:
    """Validates the inputs, runs the whole DAG and returns the run summary.

    ``trainer_options`` are :class:`~tfx_mtl.models.trainer_config.TrainerConfig`
    fields; ``cpu_replicas`` > 1 splits the CPU into that many logical devices,
    so the Trainer runs under MirroredStrategy (as it would on several GPUs).
    ``baselines`` ("train" | "reuse") overrides the spec's ``evaluation.baselines``,
    ``seeds`` (trainings of each model, for ModelComparison) its ``evaluation.seeds``.
    ``beam_runner`` / ``beam_workers`` / ``dask_scheduler`` / ``beam_args`` choose where
    the data-parallel components run (:mod:`tfx_mtl.runners.beam_runner`).
    Refuses (InputError on ``--output-dir``) a directory another run holds or that
    cannot be written.
    """
    out = out or sys.stdout
    data = data or data_lib.bundled_taxi_csv()
    spec_path = spec_path or data_lib.bundled_spec()
    run_parameters.check_train_steps(train_steps, "--train-steps")
    beam = _beam_runner.check(beam_runner, beam_workers, dask_scheduler, beam_args)
    _beam_runner.require_dag_support(beam)
    # Refuse a bad spec or data before anything heavy is imported or run.
    spec = task_spec.load(spec_path)
    data_lib.require_columns(data, spec)  # a missing column is the data's problem
    scans = label_checks.scan(data, spec)  # one pass over the label columns
    label_checks.check(scans, spec)  # a label that cannot be learned or judged
    seeds = run_parameters.check_positive_int(
        spec.evaluation.seeds if seeds is None else seeds, "--seeds")

    paths = metadata_lib.RunPaths(os.path.abspath(output_dir))
    with run_lock.acquire(paths.output_dir) as lock:  # refuses a directory in use, at once
        _recover(paths, lock, out)
        return _run_holding_lock(paths, spec, spec_path=spec_path, data=data,
                                 train_steps=train_steps, eval_steps=eval_steps,
                                 trainer_options=trainer_options, cpu_replicas=cpu_replicas,
                                 baselines=baselines, seeds=seeds, scans=scans, beam=beam,
                                 out=out)


def _recover(paths: metadata_lib.RunPaths, lock: run_lock.RunLock, out: TextIO) -> None:
    """Puts right what a killed run left (:mod:`recovery`); says so when there was any."""
    why = recovery.describe_previous(lock.previous)
    marked = recovery.abandon_stale_executions(paths.metadata, why)
    if marked or lock.previous:
        out.write(f"tfx-mtl: {why}: marked {marked} unfinished execution(s) FAILED "
                  f"in {paths.metadata}\n")
    for temp in recovery.clean_push_temporaries(paths.serving_model_dir):
        out.write(f"tfx-mtl: removed {temp} (a push that did not finish)\n")


def _run_holding_lock(paths: metadata_lib.RunPaths, spec: task_spec.TaskSpec, *,
                      spec_path: str, data: str, train_steps: int, eval_steps: int,
                      trainer_options: dict[str, Any] | None, cpu_replicas: int | None,
                      baselines: str | None, seeds: int,
                      scans: dict[str, label_checks.Scan], beam: _beam_runner.BeamOptions,
                      out: TextIO) -> dict[str, Any]:
    try:
        os.makedirs(paths.logs, exist_ok=True)
    except OSError as e:
        raise InputError(run_lock.FIELD, f"cannot write to {paths.logs}: {e.strerror}") from None
    # By second and pid: two runs in one second keep their own logs.
    log_file = os.path.join(paths.logs, time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}.log"))
    name = naming.pipeline_name(spec.name)
    out.write(f"tfx-mtl: pipeline {name!r} on {data}\n"
              f"  splits: {data_lib.describe_splits(data, spec.data.splits)}\n"
              f"  spec {spec_path}: tasks {', '.join(spec.task_names)}\n"
              f"  beam: {beam.describe()}\n"
              f"  output {paths.output_dir} (full log: {log_file})\n")
    out.flush()
    progress = ComponentProgress(out)
    # Heavy imports only once the spec and data are known good, and inside the log
    # context: TensorFlow's start-up messages belong in the log, not the terminal.
    with _logging_to(log_file, progress):
        from tfx_mtl.models.trainer_config import checked_trainer_config

        trainer_config = checked_trainer_config(trainer_options, spec)
        baselines = baselines or spec.evaluation.baselines
        if baselines == "reuse":
            _check_reusable_baselines(paths.metadata, name, spec, trainer_config, seeds)
        if cpu_replicas and cpu_replicas > 1:
            from tfx_mtl.models import distribution
            distribution.split_cpu(cpu_replicas)
    arch = trainer_config.architecture
    out.write(f"  model {arch.name}, weighting {trainer_config.weighting}, "
              f"combine {trainer_config.combine}\n"
              f"  baselines: {'reuse the latest' if baselines == 'reuse' else 'train'} "
              f"(single-task, per task); policy {spec.evaluation.policy!r}"
              + (f"; {seeds} seeds of every model" if seeds > 1 else "") + "\n")
    if trainer_config.train_epochs is not None:
        out.write(f"  budget: {trainer_config.train_epochs:g} epochs over the train split (each "
                  "Trainer counts its examples and works out its steps)\n")
    warnings = small_data_warnings(scans, spec, trainer_config, train_steps)
    for warning in warnings:
        out.write(f"  warning: {warning['message']}\n")
    started = time.monotonic()
    try:
        with _logging_to(log_file, progress), _beam_runner.session(beam) as heavy_beam_args:
            from tfx import v1 as tfx
            from tfx_mtl.pipeline import pipeline as pipeline_lib

            logging.getLogger(__name__).info("beam: %s; args of the data-parallel "
                                             "components: %s", beam.describe(),
                                             " ".join(heavy_beam_args))

            pipeline = pipeline_lib.create_pipeline(
                pipeline_name=name,
                pipeline_root=paths.pipeline_root,
                data=pipeline_lib.DataSource.from_path(data),
                spec=spec,
                serving_model_dir=os.path.join(paths.serving_model_dir, name),
                train_steps=train_steps,
                eval_steps=eval_steps,
                trainer_config=trainer_config,
                baselines=baselines,
                seeds=seeds,
                scale=pipeline_lib.Scale(beam_args=heavy_beam_args),
                metadata_connection_config=(
                    tfx.orchestration.metadata.sqlite_metadata_connection_config(paths.metadata)))
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except InputError as e:  # a component refused the input (e.g. the data's anomalies)
        raise InputError(e.field, f"{e.message}\n  (refused by component {progress.running}; "
                                  f"full log in {log_file})") from e
    except Exception as e:
        # CsvExampleGen names neither file nor line of a ragged row; find them now.
        if data_lib.RAGGED_ERROR in str(e) and (ragged := data_lib.ragged_row(data)):
            raise data_lib.DataError(ragged.field, f"{ragged.message}\n  (CsvExampleGen "
                                     f"failed on it; full log in {log_file})") from e
        raise PipelineFailed(progress.running, e, log_file) from e
    out.write(f"  pipeline finished in {time.monotonic() - started:.1f}s\n")

    with _logging_to(log_file, progress):  # TFMA's readers warn about deprecations
        from tfx_mtl.results import summary as summary_lib
        summary = summary_lib.collect(paths.output_dir, name)
        summary["beam"] = {"runner": beam.runner, "workers": beam.workers,
                           "args": list(heavy_beam_args)}
        summary["warnings"] = (warnings + summary_lib.interval_warnings(summary, spec)
                               + summary_lib.gate_warnings(summary))
    summary_lib.render(summary, spec, out)
    return summary


def small_data_warnings(scans: dict[str, label_checks.Scan], spec: task_spec.TaskSpec,
                        trainer_config, train_steps: int) -> list[dict[str, Any]]:
    """Before the run: eval splits too small for a verdict, and a budget of many epochs
    over a small train split (:mod:`label_checks`), from the data's scan."""
    splits = label_checks.expected_split_counts(scans, spec.data.splits)
    budget = label_checks.epoch_warning(splits, trainer_config.batch_size, steps=train_steps,
                                        epochs=trainer_config.train_epochs)
    return label_checks.small_split_warnings(splits, spec) + ([budget] if budget else [])


def _check_reusable_baselines(metadata: str, name: str, spec: task_spec.TaskSpec,
                              trainer_config, seeds: int) -> None:
    """Refuses ``reuse`` before the run when a task has no baseline to reuse, for any
    seed: TFMA would silently skip the comparison (and the gate would then refuse the
    task), and ModelComparison would wait for a model that never comes."""
    tasks = trainer_config.trained_spec(spec).task_names
    missing = [_describe_baseline(node)
               for node in metadata_lib.missing_baselines(metadata, name, tasks, seeds)]
    if missing:
        raise InputError(
            "baselines: reuse", f"no trained single-task baseline for task(s) "
            f"{', '.join(missing)} in {metadata}; run once with baselines: train"
            + (f" and --seeds {seeds}" if seeds > 1 else ""))


def _describe_baseline(node: str) -> str:
    """``fare`` for seed 0's baseline node, ``fare (seed index 1)`` for another seed's."""
    index = naming.seed_index(node)
    return naming.baseline_task(node) + (f" (seed index {index})" if index else "")


def _logging_to(log_file: str, progress: logging.Handler) -> log_capture.LogCapture:
    """All logging and descriptor 2 into the run's log file; component progress (and the
    run's own messages) to the terminal."""
    return log_capture.LogCapture(log_file, [progress])
