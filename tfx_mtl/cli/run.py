"""``tfx-mtl run``: the whole DAG on this machine, then the per-task summary."""
from __future__ import annotations

import argparse

from tfx_mtl.cli import options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run the whole TFX DAG locally and print the per-task summary",
        description="Runs ExampleGen -> ... -> Pusher with LocalDagRunner, a SQLite MLMD "
                    "store and Beam's DirectRunner, then prints per-task metrics.")
    p.add_argument("--data", help="a file, or a directory of files of one format: CSV (*.csv, "
                                  "with a header row) or TFRecord of tf.Example (*.tfrecord*, "
                                  "gzip when .gz), hashed into train/validation/test; or a "
                                  "directory of train/, validation/ and test/, used as given "
                                  "(default: the taxi sample bundled with tfx)")
    options.add_spec(p)
    p.add_argument("--output-dir", default="runs",
                   help="pipeline root, MLMD store, pushed models and logs (default: ./runs)")
    options.add_steps_and_batch(p, "Trainer steps")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.add_argument("--reuse-baselines", action="store_true",
                   help="compare with the latest single-task baselines in the output "
                        "directory's MLMD store instead of training them (the spec's "
                        "evaluation.baselines: reuse)")
    options.add_training_options(p)
    p.add_argument("--seeds", type=options.positive_int, metavar="N",
                   help="train the multi-task model and every baseline N times (seeds "
                        "seed, seed+1, ...) and judge changes on all of them; seed 0's "
                        "model is the one evaluated per slice and pushed (default: the "
                        "spec's evaluation.seeds)")
    add_beam_options(p)
    p.set_defaults(func=run)


def add_beam_options(p: argparse.ArgumentParser) -> None:
    """Where ExampleGen, StatisticsGen, Transform and the Evaluators run
    (:mod:`tfx_mtl.runners.beam_runner`); the other components stay in this process."""
    from tfx_mtl.runners import beam_runner

    beam = p.add_argument_group("Beam runner of the data-parallel components")
    beam.add_argument("--beam-runner", choices=beam_runner.RUNNERS,
                      help=f"{beam_runner.IN_PROCESS}: in this process; "
                           f"{beam_runner.MULTI_PROCESS}: --beam-workers worker processes; "
                           f"{beam_runner.DASK}: refused for now, Beam's Dask runner "
                           "loses rows (docs/scale.md) "
                           f"(default: {beam_runner.DEFAULT_RUNNER})")
    beam.add_argument("--beam-workers", type=options.positive_int, metavar="N",
                      help="worker processes for multi-process or dask (default: the "
                           "machine's cores)")
    beam.add_argument("--dask-scheduler", metavar="ADDRESS",
                      help="a running dask scheduler, e.g. tcp://host:8786 (implies "
                           "--beam-runner dask; refused for now, as dask is)")
    beam.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                      help="a Beam option for those components, after the runner's own, "
                           "e.g. --beam-arg=--direct_num_workers=4 (repeat)")


def run(args: argparse.Namespace) -> int:
    from tfx_mtl.runners import local

    summary = local.run(spec_path=args.spec, data=args.data, output_dir=args.output_dir,
                        train_steps=options.train_steps(args), eval_steps=args.eval_steps,
                        trainer_options=options.trainer_options(args),
                        cpu_replicas=args.cpu_replicas,
                        baselines="reuse" if args.reuse_baselines else None,
                        seeds=args.seeds, beam_runner=args.beam_runner,
                        beam_workers=args.beam_workers, dask_scheduler=args.dask_scheduler,
                        beam_args=tuple(args.beam_arg))
    if args.summary_json:
        from tfx_mtl.results import summary as summary_lib
        summary_lib.write_json(summary, args.summary_json)
        print(f"summary written to {args.summary_json}")
    return 0
