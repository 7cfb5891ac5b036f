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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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
    p.add_argument("--train-steps", type=_positive_int, default=1000, help="Trainer steps (default: 1000)")
    p.add_argument("--eval-steps", type=_positive_int, default=50, help="Trainer eval batches (default: 50)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="training batch size (default: 128)")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tfx_mtl.pipeline import local_run

    summary = local_run.run(spec_path=args.spec, data=args.data, output_dir=args.output_dir,
                            train_steps=args.train_steps, eval_steps=args.eval_steps,
                            trainer_options={"batch_size": args.batch_size})
    if args.summary_json:
        from tfx_mtl.pipeline import summary as summary_lib
        summary_lib.write_json(summary, args.summary_json)
        print(f"summary written to {args.summary_json}")
    return 0


_COMMANDS: Sequence[Callable] = (_add_run,)


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
    from tfx_mtl.data import DataError
    from tfx_mtl.task_spec import TaskSpecError

    try:
        return args.func(args)
    except (TaskSpecError, DataError) as e:
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
