"""The ``tfx-mtl`` command line.

One sub-command per user job; each is a small function registered in
``_COMMANDS``, so later jobs (serve, query, compile, ...) slot in beside ``run``.
Bad input (spec, data, arguments) exits with status 2 and a message naming the
field or file; a failed pipeline exits with status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from tfx_mtl import arg_types


def _add_run(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run the whole TFX DAG locally and print the per-task summary",
        description="Runs ExampleGen -> ... -> Pusher with LocalDagRunner, a SQLite MLMD "
                    "store and Beam's DirectRunner, then prints per-task metrics.")
    p.add_argument("--data", help="a CSV file or a directory of CSV files "
                                  "(default: the taxi sample bundled with tfx)")
    p.add_argument("--spec", help="task spec YAML (default: the bundled taxi spec)")
    p.add_argument("--output-dir", default="runs",
                   help="pipeline root, MLMD store, pushed models and logs (default: ./runs)")
    p.add_argument("--train-steps", type=arg_types.positive_int, default=1000,
                   help="Trainer steps (default: 1000)")
    p.add_argument("--eval-steps", type=arg_types.positive_int, default=50,
                   help="Trainer eval batches (default: 50)")
    p.add_argument("--batch-size", type=arg_types.positive_int, default=128,
                   help="global training batch size (default: 128)")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.add_argument("--reuse-baselines", action="store_true",
                   help="compare with the latest single-task baselines in the output "
                        "directory's MLMD store instead of training them (the spec's "
                        "evaluation.baselines: reuse)")
    _add_training_options(p)
    p.set_defaults(func=_run)


def _add_training_options(p) -> None:
    """Model and optimiser options; unset ones keep the TrainerConfig defaults."""
    g = p.add_argument_group("model and multi-task optimiser")
    g.add_argument("--model", dest="arch_name",
                   help="shared_bottom (default), mmoe, ple, cross_stitch or single_task")
    g.add_argument("--experts", dest="arch_experts", type=arg_types.positive_int,
                   help="MMoE experts / PLE shared experts per level")
    g.add_argument("--task-experts", dest="arch_task_experts", type=arg_types.positive_int,
                   help="PLE task-specific experts per task and level")
    g.add_argument("--levels", dest="arch_levels", type=arg_types.positive_int,
                   help="PLE extraction levels (1 = CGC)")
    g.add_argument("--hidden-units", dest="arch_hidden_units", type=arg_types.units,
                   help="widths of the trunk / each expert / each column, e.g. 256,256")
    g.add_argument("--tower-units", dest="arch_tower_units", type=arg_types.units,
                   help="widths of each task tower, e.g. 32")
    g.add_argument("--dropout", dest="arch_dropout", type=arg_types.number, help="dropout rate")
    g.add_argument("--family", dest="arch_family",
                   help="single_task: the architecture family of the one-task model")
    g.add_argument("--task", dest="arch_task", help="single_task: the task it learns")
    g.add_argument("--weighting", help="uniform (default), uncertainty, gradnorm or dwa")
    g.add_argument("--gradnorm-alpha", type=arg_types.number,
                   help="GradNorm's alpha (default 1.5; only with --weighting gradnorm)")
    g.add_argument("--combine", help="sum (default), pcgrad, cagrad, mgda or mgda_ub")
    g.add_argument("--cagrad-c", type=arg_types.number, help="CAGrad's c (default 0.5)")
    g.add_argument("--learning-rate", type=arg_types.positive_number,
                   help="Adam's learning rate (default 1e-3)")
    g.add_argument("--seed", type=arg_types.non_negative_int, help="random seed (default 42)")
    g.add_argument("--checkpoint-every", type=arg_types.non_negative_int,
                   help="steps between checkpoints in the Trainer's run directory (default 500)")
    g.add_argument("--log-every", type=arg_types.positive_int,
                   help="steps between log lines and TensorBoard points (default 50)")
    g.add_argument("--eval-every", type=arg_types.non_negative_int,
                   help="steps between in-loop evaluations on the eval split (default: never)")
    g.add_argument("--cpu-replicas", type=arg_types.positive_int,
                   help="split the CPU into N logical devices and train under MirroredStrategy")
    g.add_argument("--early-stopping", dest="early_stopping_patience",
                   type=arg_types.positive_int,
                   help="stop after this many evaluations without improvement of the primary "
                        "task's first metric (needs --eval-every)")


def trainer_options(args: argparse.Namespace) -> dict:
    """The TrainerConfig fields set on the command line."""
    options = {"batch_size": args.batch_size}
    arch = {key[len("arch_"):]: value for key, value in vars(args).items()
            if key.startswith("arch_") and value is not None}
    if arch:
        options["architecture"] = arch
    for key in ("weighting", "combine", "cagrad_c", "learning_rate", "seed", "checkpoint_every",
                "log_every", "eval_every", "early_stopping_patience"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    if getattr(args, "gradnorm_alpha", None) is not None:
        options["weighting_params"] = {"alpha": args.gradnorm_alpha}
    return options


def _run(args: argparse.Namespace) -> int:
    from tfx_mtl.pipeline import local_run

    summary = local_run.run(spec_path=args.spec, data=args.data, output_dir=args.output_dir,
                            train_steps=args.train_steps, eval_steps=args.eval_steps,
                            trainer_options=trainer_options(args),
                            cpu_replicas=args.cpu_replicas,
                            baselines="reuse" if args.reuse_baselines else None)
    if args.summary_json:
        from tfx_mtl.pipeline import summary as summary_lib
        summary_lib.write_json(summary, args.summary_json)
        print(f"summary written to {args.summary_json}")
    return 0


def _add_synth(subparsers) -> None:
    from tfx_mtl import synth_cli
    synth_cli.add_parser(subparsers)


def _add_bench(subparsers) -> None:
    from tfx_mtl import bench_cli
    bench_cli.add_parser(subparsers)


def _add_serve(subparsers) -> None:
    from tfx_mtl.serving import serve_cli
    serve_cli.add_parser(subparsers)


def _add_query(subparsers) -> None:
    from tfx_mtl.serving import query_cli
    query_cli.add_parser(subparsers)


def _add_compile(subparsers) -> None:
    from tfx_mtl import compile_cli
    compile_cli.add_parser(subparsers)


def _add_submit(subparsers) -> None:
    from tfx_mtl import submit_cli
    submit_cli.add_parser(subparsers)


_COMMANDS: Sequence[Callable] = (_add_run, _add_synth, _add_bench, _add_serve, _add_query,
                                 _add_compile, _add_submit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfx-mtl", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Quieten TensorFlow's C++ start-up chatter; the full log goes to a file.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfx_mtl.components.curated_schema import SchemaFileError
    from tfx_mtl.data import DataError
    from tfx_mtl.pipeline.local_run import OptionsError
    from tfx_mtl.task_spec import TaskSpecError

    try:
        return args.func(args)
    except (TaskSpecError, DataError, OptionsError, SchemaFileError) as e:
        print(f"tfx-mtl: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from tfx_mtl.pipeline.local_run import PipelineFailed

        if not isinstance(e, PipelineFailed):  # not a component's failure: show where
            traceback.print_exc()
        print(f"tfx-mtl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
