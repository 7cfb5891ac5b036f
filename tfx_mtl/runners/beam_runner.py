"""Which Beam runner a local run's data-parallel components use, as Beam args.

``tfx-mtl run --beam-runner``: ``in-process`` (Beam's FnApiRunner in this process),
``multi-process`` (the same runner with N worker processes) or ``dask`` (Beam's Dask
runner on a local ``dask.distributed`` cluster of N worker processes, started for the
run and stopped after it, or on a given scheduler; the DAG refuses it for now, see
:func:`require_dag_support`). Every direct run is pinned to
:class:`tfx_mtl.runners.direct_runner.PinnedDirectRunner`, so no run ever tries to
download Beam's Prism runner. The args go to ExampleGen, StatisticsGen, Transform and
the Evaluators (``Scale.beam_args``, as ``compile --beam-arg`` does); the light
components keep the pipeline's in-process args.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Iterator, Sequence

from tfx_mtl.errors import InputError

IN_PROCESS, MULTI_PROCESS, DASK = "in-process", "multi-process", "dask"
RUNNERS = (IN_PROCESS, MULTI_PROCESS, DASK)
# Measured in docs/scale.md: two worker processes on this 2-core machine cost more CPU
# and memory than they save in wall time.
DEFAULT_RUNNER = IN_PROCESS
PINNED_RUNNER_ARG = "--runner=tfx_mtl.runners.direct_runner.PinnedDirectRunner"
# The in-process args every local Beam run starts from (pipeline.DIRECT_BEAM_ARGS).
IN_PROCESS_ARGS = (PINNED_RUNNER_ARG, "--direct_running_mode=in_memory",
                   "--direct_num_workers=1")
DASK_RUNNER_ARG = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
_ADDRESS = re.compile(r"^([a-z]+://)?[^\s:/]+:\d{1,5}$")


@dataclasses.dataclass(frozen=True)
class BeamOptions:
    """The checked ``--beam-*`` options of one run."""

    runner: str = DEFAULT_RUNNER
    workers: int = 1
    dask_scheduler: str | None = None
    extra: tuple[str, ...] = ()  # --beam-arg, appended last (they win)

    def describe(self) -> str:
        """One line for the run's header and log: which runner ran."""
        where = {IN_PROCESS: "Beam FnApiRunner in this process",
                 MULTI_PROCESS: f"Beam FnApiRunner, {self.workers} worker processes",
                 DASK: (f"Beam DaskRunner on the scheduler {self.dask_scheduler}"
                        if self.dask_scheduler else
                        f"Beam DaskRunner on a local cluster of {self.workers} worker "
                        "processes")}[self.runner]
        return f"{self.runner} ({where})" + (
            f", extra args {' '.join(self.extra)}" if self.extra else "")


def check(runner: str | None = None, workers: int | None = None,
          dask_scheduler: str | None = None, extra: Sequence[str] = ()) -> BeamOptions:
    """The options, checked; InputError names the flag at fault. ``workers`` defaults to
    the machine's cores for multi-process and dask, and is refused for in-process."""
    runner = runner or (DASK if dask_scheduler else DEFAULT_RUNNER)
    if runner not in RUNNERS:
        raise InputError("--beam-runner", f"must be one of {', '.join(RUNNERS)}, "
                                          f"got {runner!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise InputError("--beam-workers", f"must be a positive integer, got {workers!r}")
    if runner == IN_PROCESS and workers not in (None, 1):
        raise InputError("--beam-workers", f"{workers} workers need --beam-runner "
                                           f"{MULTI_PROCESS} or {DASK}")
    if dask_scheduler is not None:
        if runner != DASK:
            raise InputError("--dask-scheduler", f"only with --beam-runner {DASK}")
        if not _ADDRESS.match(dask_scheduler):
            raise InputError("--dask-scheduler", "must be a scheduler address such as "
                                                 f"tcp://host:8786, got {dask_scheduler!r}")
        if workers is not None:
            raise InputError("--beam-workers", "a given --dask-scheduler has its own workers")
    for arg in extra:
        if not arg.startswith("--"):
            raise InputError("--beam-arg", f"must be a Beam option such as "
                                           f"--direct_num_workers=2, got {arg!r}")
    if workers is None:
        workers = 1 if runner == IN_PROCESS else (os.cpu_count() or 1)
    return BeamOptions(runner, workers, dask_scheduler, tuple(extra))


# Beam 2.77's DaskRunner loses data (docs/scale.md): it collects a bundle's outputs
# before calling the DoFn's finish_bundle, so what finish_bundle emits is dropped
# (BatchElements' last batch, which TFDV, TFT and TFMA batch with; the file names a
# file sink passes to its finalize step, so ExampleGen's output files come out empty),
# and a multi-output ParDo (beam.Partition, ExampleGen's splits) does not split. Turn
# this on with a Beam whose DaskRunner fails tests/runners/test_dask_runner_e2e.py's
# pin of that bug and runs the DAG.
DASK_RUNS_THE_DAG = False


def require_dag_support(options: BeamOptions) -> None:
    """Refuses a runner that cannot run the DAG's Beam components correctly."""
    if options.runner == DASK and not DASK_RUNS_THE_DAG:
        raise InputError("--beam-runner", (
            "dask: Beam's Dask runner (apache-beam 2.77) drops what a DoFn emits in "
            "finish_bundle (the last batch of BatchElements, a file sink's written "
            "files) and does not split multi-output ParDos, so ExampleGen, "
            "StatisticsGen, Transform and the Evaluators would lose data on it; see "
            "docs/scale.md. Use in-process or multi-process"))


def beam_args(options: BeamOptions, dask_address: str | None = None) -> tuple[str, ...]:
    """The data-parallel components' Beam args; ``dask_address`` is the scheduler the
    run's Dask cluster listens at (``--dask-scheduler`` or the one :func:`session`
    started)."""
    if options.runner == IN_PROCESS:
        args = IN_PROCESS_ARGS
    elif options.runner == MULTI_PROCESS:
        args = (PINNED_RUNNER_ARG, "--direct_running_mode=multi_processing",
                f"--direct_num_workers={options.workers}")
    else:
        address = dask_address or options.dask_scheduler
        if not address:
            raise ValueError("the dask runner needs its scheduler's address")
        args = (DASK_RUNNER_ARG, f"--dask_client_address={address}")
    return args + options.extra


@contextlib.contextmanager
def session(options: BeamOptions) -> Iterator[tuple[str, ...]]:
    """Yields the run's Beam args; for dask without a scheduler, a local cluster of
    ``options.workers`` processes lives exactly as long as the ``with`` block."""
    if options.runner == DASK and not options.dask_scheduler:
        from tfx_mtl.runners import dask_cluster

        with dask_cluster.local_cluster(options.workers) as address:
            yield beam_args(options, address)
    else:
        yield beam_args(options)
