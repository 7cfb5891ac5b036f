"""``tfx-mtl bench train``: time the multi-task training loop against Keras fit and its methods.

Register with ``add_parser(subparsers)``. Argument syntax errors exit 2 through
argparse; a combination the benchmark refuses (e.g. more tasks than features)
makes :func:`run_train` print a message naming the option and return 2.
Progress goes to stderr, the table to stdout. What is measured and how:
:mod:`tfx_mtl.bench.train_bench` and docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import sys

from tfx_mtl import arg_types

# BenchSettings field -> the option that sets it, for error messages.
_OPTIONS = {"tasks": "--tasks", "batch_size": "--batch-size", "hidden_units": "--hidden-units",
            "tower_units": "--tower-units", "steps": "--steps", "warmup": "--warmup",
            "rounds": "--rounds", "rows": "--rows", "features": "--features",
            "learning_rate": "--learning-rate", "seed": "--seed"}


def add_parser(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmarks (train: the training loop's speed)",
        description="Benchmarks of tfx-mtl; results are recorded in docs/BENCHMARKS.md.")
    which = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    p = which.add_parser(
        "train", help="the multi-task loop vs Keras fit, and each method's cost vs sum",
        description="Times, in one process and in interleaved rounds, the custom training loop "
                    "with sum + uniform against Keras model.fit on the same shared_bottom model "
                    "and in-memory synthetic data, and every weighting / combination method "
                    "against sum + uniform, for each K. Prints a table; --json also writes "
                    "the ratios, the raw medians and the command line.")
    p.add_argument("--tasks", type=arg_types.positive_int, nargs="+", default=[2, 3, 5],
                   metavar="K",
                   help="numbers of tasks to benchmark, each >= 2 (default: 2 3 5)")
    p.add_argument("--batch-size", type=arg_types.positive_int, default=512, metavar="B",
                   help="global batch size (default: 512)")
    p.add_argument("--hidden-units", type=arg_types.units, default=(256, 256),
                   metavar="W1,W2,...",
                   help="widths of the shared trunk (default: 256,256)")
    p.add_argument("--tower-units", type=arg_types.units, default=(64,), metavar="W1,...",
                   help="widths of each task tower (default: 64)")
    p.add_argument("--steps", type=arg_types.positive_int, default=50, metavar="N",
                   help="timed steps per configuration per round (default: 50)")
    p.add_argument("--warmup", type=arg_types.positive_int, default=10, metavar="W",
                   help="untimed steps per configuration after tracing (default: 10)")
    p.add_argument("--rounds", type=arg_types.positive_int, default=9, metavar="R",
                   help="interleaved timing rounds; the median is reported (default: 9)")
    p.add_argument("--rows", type=arg_types.positive_int, default=20_000, metavar="N",
                   help="synthetic rows held in memory (default: 20000)")
    p.add_argument("--features", type=arg_types.positive_int, default=100, metavar="D",
                   help="numeric input features (default: 100)")
    p.add_argument("--learning-rate", type=arg_types.positive_number, default=1e-3,
                   metavar="LR",
                   help="Adam's learning rate, for both the loop and fit (default: 0.001)")
    p.add_argument("--seed", type=arg_types.non_negative_int, default=0, metavar="S",
                   help="seed of the data and of the model initialisation (default: 0)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from tfx_mtl.bench import train_bench

    try:
        settings = train_bench.BenchSettings(
            tasks=tuple(args.tasks), batch_size=args.batch_size,
            hidden_units=tuple(args.hidden_units), tower_units=tuple(args.tower_units),
            steps=args.steps, warmup=args.warmup, rounds=args.rounds, rows=args.rows,
            features=args.features, learning_rate=args.learning_rate, seed=args.seed)
    except train_bench.BenchError as e:
        print(f"tfx-mtl bench train: error: {_OPTIONS.get(e.field, e.field)}: {e.message}",
              file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    report = train_bench.run(settings, progress)
    m = report.machine
    print(f"tfx-mtl bench train: shared_bottom trunk {_widths(settings.hidden_units)}, "
          f"towers {_widths(settings.tower_units)}, batch {settings.batch_size}, "
          f"{settings.features} features x {settings.rows} rows in memory; "
          f"median of {settings.rounds} interleaved rounds of {settings.steps} steps")
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, TensorFlow {m['tensorflow']}, "
          f"Keras {m['keras']}; run took {report.seconds:.0f} s")
    print("input pipeline alone (ms/batch): " + "; ".join(
        f"K={k} loop {v['loop']:.2f}, fit {v['fit']:.2f}"
        for k, v in sorted(report.input_ms.items())))
    print(train_bench.format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(train_bench.to_json(report), f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"results written to {args.json}")
    return 0


def _widths(units) -> str:
    return "-".join(map(str, units))
