"""``tfx-mtl bench train``: time the multi-task training loop against Keras fit and its methods.

A combination a benchmark refuses (e.g. more tasks than features) is bad input;
``TRAIN_FIELDS`` / ``SERVING_FIELDS`` map its settings to their options.
Progress goes to stderr, the table to stdout. What is measured and how:
:mod:`tfx_mtl.bench.train_bench` and docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import sys

from tfx_mtl.cli import options
from tfx_mtl.errors import InputError

# BenchSettings field -> the option that sets it, for error messages.
TRAIN_FIELDS = {"tasks": "--ks", "batch_size": "--batch-size", "hidden_units": "--hidden-units",
            "tower_units": "--tower-units", "steps": "--steps", "warmup": "--warmup",
            "rounds": "--rounds", "rows": "--rows", "features": "--features",
            "learning_rate": "--learning-rate", "seed": "--seed", "experts": "--experts",
            "threads": "--threads", "methods": "--methods"}


def add_parser(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmarks (train: the training loop's speed; serving: latency of "
             "one multi-task model vs one call per task vs K single-task models; dag: the "
             "whole DAG's cost per component at growing data sizes)",
        description="Benchmarks of tfx-mtl; results are recorded in docs/BENCHMARKS.md.")
    which = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    p = which.add_parser(
        "train", help="the multi-task loop vs Keras fit, and each method's cost vs sum",
        description="Times, in one process and in interleaved rounds, the custom training loop "
                    "with sum + uniform against Keras model.fit on the same shared_bottom model "
                    "and in-memory synthetic data, and every weighting / combination method "
                    "against sum + uniform, for each K. Prints a table; --json also writes "
                    "the ratios, the raw medians and the command line.")
    p.add_argument("--ks", "--tasks", dest="tasks", type=options.positive_int, nargs="+",
                   default=None, metavar="K",
                   help="numbers of tasks to benchmark, each >= 2 (default: 2 3 5 8; "
                        "--quick: 5)")
    p.add_argument("--batch-size", type=options.positive_int, default=512, metavar="B",
                   help="global batch size (default: 512)")
    p.add_argument("--hidden-units", type=options.units, default=(256, 256),
                   metavar="W1,W2,...",
                   help="widths of the shared trunk (default: 256,256)")
    p.add_argument("--tower-units", type=options.units, default=(64,), metavar="W1,...",
                   help="widths of each task tower (default: 64)")
    p.add_argument("--steps", type=options.positive_int, default=None, metavar="N",
                   help="timed steps per configuration per round (default: 20; --quick: 10)")
    p.add_argument("--warmup", type=options.positive_int, default=None, metavar="W",
                   help="untimed steps per configuration after tracing (default: 5; "
                        "--quick: 2)")
    p.add_argument("--rounds", type=options.positive_int, default=None, metavar="R",
                   help="interleaved timing rounds; the median is reported (default: 5; "
                        "--quick: 3)")
    p.add_argument("--rows", type=options.positive_int, default=20_000, metavar="N",
                   help="synthetic rows held in memory (default: 20000)")
    p.add_argument("--features", type=options.positive_int, default=100, metavar="D",
                   help="numeric input features (default: 100)")
    p.add_argument("--learning-rate", type=options.positive_number, default=1e-3,
                   metavar="LR",
                   help="Adam's learning rate, for both the loop and fit (default: 0.001)")
    p.add_argument("--seed", type=options.non_negative_int, default=0, metavar="S",
                   help="seed of the data and of the model initialisation (default: 0)")
    p.add_argument("--experts", type=options.positive_int, default=4, metavar="E",
                   help="experts of the MMoE rows and the reference MMoE, and PLE's shared "
                        "experts, each of --hidden-units (default: 4)")
    p.add_argument("--threads", type=options.non_negative_int, nargs="+", default=[1, 0],
                   metavar="N",
                   help="TensorFlow intra- and inter-op thread settings, 0: its default; each "
                        "setting runs in its own process, the tables side by side "
                        "(default: 1 0)")
    p.add_argument("--methods", "--only", dest="methods", nargs="+", default=[],
                   metavar="NAME",
                   help="time only these configurations (sum, the baseline, always): method "
                        "rows as named in the table's JSON (a combination, "
                        "NAME@representation, a weighting), keras_fit, mmoe, mmoe_reference, "
                        "ple (default: all, derived from the method registries)")
    p.add_argument("--quick", action="store_true",
                   help="K = 5 only, 3 rounds of 10 steps after 2 warm-up steps (options "
                        "given explicitly win)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.set_defaults(func=run_train, fields=TRAIN_FIELDS)
    _add_serving(which)
    _add_transfer(which)
    _add_dag(which)


def run_train(args: argparse.Namespace) -> int:
    from tfx_mtl.bench import train_bench

    chosen = {"tasks": args.tasks and tuple(args.tasks), "steps": args.steps,
              "warmup": args.warmup, "rounds": args.rounds}
    preset = train_bench.QUICK if args.quick else {}
    settings = train_bench.BenchSettings(
        batch_size=args.batch_size, hidden_units=tuple(args.hidden_units),
        tower_units=tuple(args.tower_units), rows=args.rows, features=args.features,
        learning_rate=args.learning_rate, seed=args.seed, experts=args.experts,
        threads=args.threads[0], methods=tuple(args.methods),
        **{**preset, **{k: v for k, v in chosen.items() if v is not None}})

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    runs = train_bench.run_thread_settings(settings, tuple(args.threads), progress)
    m = runs[0]["machine"]
    print(f"tfx-mtl bench train: shared_bottom trunk {_widths(settings.hidden_units)}, "
          f"towers {_widths(settings.tower_units)}, batch {settings.batch_size}, "
          f"{settings.features} features x {settings.rows} rows in memory; "
          f"median of {settings.rounds} interleaved rounds of {settings.steps} steps; "
          f"MMoE / PLE: {settings.experts} experts of {_widths(settings.hidden_units)}")
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, TensorFlow {m['tensorflow']}, "
          f"Keras {m['keras']}; runs took "
          + ", ".join(f"{r['seconds']:.0f} s ({train_bench.threads_label(r['threads'])})"
                      for r in runs))
    for r in runs:
        print(f"input pipeline alone (ms/batch, {train_bench.threads_label(r['threads'])}): "
              + "; ".join(f"{k} loop {v['loop']:.2f}, fit {v['fit']:.2f}"
                          for k, v in sorted(r["input_ms_per_batch"].items())))
    print(train_bench.format_table(runs))
    _write_json(args.json, {"runs": runs,
                            "command": train_bench.command_line(settings, args.threads)})
    return 0


# serving_bench.BenchSettings field -> its option.
SERVING_FIELDS = {"model_base": "--model-base", "single_task_bases": "--single-task-base",
                    "rows_per_request": "--rows", "units": "--units", "warmup": "--warmup",
                    "rounds": "--rounds", "input": "--input", "schema": "--schema",
                    "servers": "--servers", "timeout": "--timeout", "model": "--model-base",
                    "run_dir": "--run-dir", "request_checks": "--request-checks"}


def _add_serving(which) -> None:
    p = which.add_parser(
        "serving", help="serving latency: one serving_default call vs one call per task vs "
                        "K single-task models",
        description="Starts tfx-mtl dev servers on 127.0.0.1 (the multi-task model and K "
                    "single-task models) and times, in interleaved rounds, answering all "
                    "tasks for a request of 1 and of 64 rows: (a) one serving_default "
                    "call, (b) one call per task signature, (c) one call per single-task "
                    "model. Prints p50/p99 latency and units/s with ratios to (a); --json "
                    "also writes every latency and the command line. Models: --run-dir (a "
                    "`tfx-mtl run --output-dir`, whose pushed model and baseline Trainers "
                    "are found in its MLMD store) or --model-base with --single-task-base "
                    "TASK=DIR for each task. --request-checks instead times the dev "
                    "server's checks of Predict inputs: the multi-task model served with "
                    "them on and off, side by side in one process, one serving_default "
                    "call per unit, ratios on / off.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", metavar="DIR",
                        help="a `tfx-mtl run` output directory: serve its pushed multi-task "
                             "model (else the Trainer's) and every baseline_<task> model")
    source.add_argument("--model-base", metavar="DIR",
                        help="the multi-task model: a pushed base (<version>/saved_model.pb) "
                             "or a SavedModel directory")
    p.add_argument("--single-task-base", action="append", default=[], metavar="TASK=DIR",
                   help="a single-task model for TASK (base or SavedModel dir); repeat per "
                        "task; with --model-base")
    p.add_argument("--rows", type=options.positive_int, nargs="+", default=[1, 64],
                   metavar="N", help="rows per request (default: 1 64)")
    p.add_argument("--units", type=options.positive_int, default=50, metavar="N",
                   help="timed units (all tasks answered) per cell per round (default: 50)")
    p.add_argument("--warmup", type=options.positive_int, default=10, metavar="N",
                   help="untimed units per cell before timing (default: 10)")
    p.add_argument("--rounds", type=options.positive_int, default=7, metavar="R",
                   help="interleaved timing rounds (default: 7)")
    p.add_argument("--input", metavar="FILE",
                   help="rows to send, .jsonl or .csv (default: the bundled taxi CSV)")
    p.add_argument("--schema", metavar="FILE",
                   help="tensorflow_metadata Schema typing the rows (default: the taxi "
                        "schema when --input is not given; else values typed as they are)")
    p.add_argument("--servers", choices=("subprocess", "inprocess"), default="subprocess",
                   help="run each dev server as a `tfx-mtl serve` process (default; RSS "
                        "measured) or in this process")
    p.add_argument("--request-checks", action="store_true",
                   help="compare the dev server with its request checks on vs off (the "
                        "multi-task model only; no --single-task-base) instead of "
                        "(a)/(b)/(c)")
    p.add_argument("--timeout", type=options.positive_number, default=30.0, metavar="S",
                   help="per-call deadline in seconds (default: 30)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.set_defaults(func=run_serving, fields=SERVING_FIELDS)


def run_serving(args: argparse.Namespace) -> int:
    from tfx_mtl.bench import serving_bench as sb

    if args.run_dir:
        if args.single_task_base:
            raise InputError("single_task_bases", "not with --run-dir (it finds the baselines)")
        try:
            model_base, singles = sb.models_from_run(args.run_dir,
                                                     baselines=not args.request_checks)
        except (OSError, LookupError, ValueError) as e:
            raise InputError("run_dir", str(e)) from None
    else:
        model_base, singles = args.model_base, []
        for item in args.single_task_base:
            task, sep, path = item.partition("=")
            if not sep or not task or not path:
                raise InputError("single_task_bases", f"expected TASK=DIR, got {item!r}")
            singles.append((task, path))
    settings = sb.BenchSettings(
        model_base=model_base, single_task_bases=tuple(singles),
        rows_per_request=tuple(args.rows), units=args.units, warmup=args.warmup,
        rounds=args.rounds, input=args.input, schema=args.schema, servers=args.servers,
        timeout=args.timeout, run_dir=args.run_dir, request_checks=args.request_checks)
    report = sb.run(settings, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    m = report.machine
    what = ("request checks on vs off, serving_default, both servers in one process"
            if settings.request_checks else f"tasks {', '.join(settings.tasks)}")
    print(f"tfx-mtl bench serving: {what}; {settings.rounds} "
          f"interleaved rounds of {settings.units} units per cell; dev servers "
          f"({settings.servers}) on 127.0.0.1, one client thread")
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, TensorFlow {m['tensorflow']}; "
          f"run took {report.seconds:.0f} s")
    print(sb.format_table(report))
    _write_json(args.json, sb.to_json(report))
    return 0


# transfer_bench.TransferSettings field -> its option.
TRANSFER_FIELDS = {"rhos": "--rhos", "seeds": "--seeds", "models": "--models",
                   "train_rows": "--train-rows", "validation_rows": "--validation-rows",
                   "test_rows": "--test-rows", "steps": "--steps", "batch_size": "--batch-size",
                   "learning_rate": "--learning-rate", "eval_every": "--eval-every",
                   "patience": "--patience", "experts": "--experts",
                   "expert_units": "--expert-units", "tower_units": "--tower-units"}


def _add_transfer(which) -> None:
    from tfx_mtl.bench import transfer_bench as tb  # no TensorFlow at import

    d = tb.TransferSettings()
    p = which.add_parser(
        "transfer", help="the MMoE paper's synthetic experiment: shared-bottom vs MMoE vs "
                         "OMoE as the tasks' correlation falls",
        description="Trains, in this process, shared-bottom, MMoE and OMoE (one gate for all "
                    "tasks) with parameter counts matched as the MMoE paper does, on "
                    "tfx-mtl synth data (2 regression tasks, 100 features) for each --rhos "
                    "and seed; each is selected on the validation split and scored on the "
                    "test split. Writes transfer.json, transfer.md (table) and transfer.png "
                    "(test loss vs rho, mean +/- 95%% interval over seeds) to --output-dir. "
                    "docs/MMOE.md has a recorded run.")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="where to write the results")
    p.add_argument("--rhos", type=float, nargs="+", default=list(d.rhos), metavar="RHO",
                   help=f"task correlations (default: {' '.join(f'{r:g}' for r in d.rhos)})")
    p.add_argument("--seeds", type=options.positive_int, default=d.seeds, metavar="N",
                   help=f"seeds 0..N-1 per rho (data and initialisation) (default: {d.seeds})")
    p.add_argument("--models", nargs="+", default=list(d.models), choices=tb.MODELS,
                   help="models to train (default: all)")
    for name, help_text in (("train_rows", "training rows"), ("validation_rows",
                            "validation rows (selection)"), ("test_rows", "test rows"),
                            ("steps", "step cap (early stopping on validation)"),
                            ("batch_size", "batch size"), ("eval_every",
                            "steps between validation evaluations"),
                            ("experts", "experts of MMoE / OMoE"),
                            ("expert_units", "width of each one-layer expert"),
                            ("tower_units", "width of each one-layer tower")):
        p.add_argument(TRANSFER_FIELDS[name], type=options.positive_int,
                       default=getattr(d, name), metavar="N",
                       help=f"{help_text} (default: {getattr(d, name)})")
    p.add_argument("--patience", type=options.non_negative_int, default=d.patience, metavar="N",
                   help=f"evaluations without improvement before stopping (default: {d.patience})")
    p.add_argument("--learning-rate", type=options.positive_number, default=d.learning_rate,
                   metavar="LR", help=f"Adam's learning rate (default: {d.learning_rate})")
    p.set_defaults(func=run_transfer, fields=TRANSFER_FIELDS)


def run_transfer(args: argparse.Namespace) -> int:
    import os

    from tfx_mtl.bench import transfer_bench as tb

    settings = tb.TransferSettings(**{name: (tuple(getattr(args, name))
                                             if name in ("rhos", "models")
                                             else getattr(args, name))
                                      for name in TRANSFER_FIELDS})
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as e:
        raise InputError("output_dir", str(e)) from None
    report = tb.run(settings, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    s = settings
    print(f"tfx-mtl bench transfer: {len(s.rhos)} rho x {s.seeds} seeds x {len(s.models)} "
          f"models; MoE {s.experts} experts of {s.expert_units}, shared bottom "
          f"{s.shared_bottom_units}, towers {s.tower_units}; run took {report.seconds:.0f} s")
    table = tb.markdown(report)
    print(table)
    with open(os.path.join(args.output_dir, "transfer.md"), "w") as f:
        f.write(f"`{tb.command_line(s)}`\n\n{table}\n")
    tb.plot(report, os.path.join(args.output_dir, "transfer.png"))
    _write_json(os.path.join(args.output_dir, "transfer.json"), tb.to_json(report))
    return 0


# dag_bench.Settings field -> its option.
DAG_FIELDS = {"rows": "--rows", "features": "--features", "tasks": "--tasks",
              "formats": "--format", "files": "--files", "train_steps": "--train-steps",
              "run_args": "--run-arg", "work_dir": "--work-dir", "interval": "--interval"}


def _add_dag(which) -> None:
    p = which.add_parser(
        "dag", help="the whole DAG on synthetic data at growing sizes: per-component "
                    "seconds, CPU-seconds, rows/s, peak RSS and log-log slopes",
        description="For each --format and --rows, generates data with `tfx-mtl synth` "
                    "(cached in --work-dir) and runs `tfx-mtl run` on it in a subprocess, "
                    "sampling the run's process tree (the run and every descendant) for "
                    "CPU-seconds and RSS and attributing them to the component running, "
                    "from the run's progress lines. Prints a markdown table per format "
                    "(per component group and size: wall s, CPU-s, rows/s, peak RSS, the "
                    "log-log slopes from the previous size) and issue 18's targets as met / "
                    "not met; --json also writes every component, the loads and the "
                    "command line. docs/BENCHMARKS.md has a recorded run.")
    p.add_argument("--rows", type=options.positive_int, nargs="+",
                   default=[10_000, 100_000, 1_000_000], metavar="N",
                   help="dataset sizes (default: 10000 100000 1000000)")
    p.add_argument("--features", type=options.positive_int, default=100, metavar="D",
                   help="numeric features (default: 100)")
    p.add_argument("--tasks", type=options.positive_int, default=3, metavar="K",
                   help="tasks (default: 3)")
    p.add_argument("--format", choices=("csv", "tfrecord", "both"), default="csv",
                   help="data format synth writes; both: each in turn (default: csv)")
    p.add_argument("--files", type=options.positive_int, default=1, metavar="N",
                   help="files synth writes the rows as (synth --files; default: 1)")
    p.add_argument("--train-steps", type=options.positive_int, default=1000, metavar="S",
                   help="each Trainer's step cap (default: 1000)")
    p.add_argument("--run-arg", action="append", default=[], metavar="ARG",
                   help="an argument passed through to `tfx-mtl run`, repeatable, e.g. "
                        "--run-arg=--beam-runner=multi-process")
    p.add_argument("--work-dir", default="bench_dag_work", metavar="DIR",
                   help="where the synth data is cached and the runs write (each run's "
                        "output is removed after it; default: ./bench_dag_work)")
    p.add_argument("--interval", type=options.positive_number, default=0.5, metavar="S",
                   help="seconds between samples of the process tree (default: 0.5)")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep each run's output directory in --work-dir/runs")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.set_defaults(func=run_dag, fields=DAG_FIELDS)


def run_dag(args: argparse.Namespace) -> int:
    from tfx_mtl.bench import dag_bench

    formats = dag_bench.FORMATS if args.format == "both" else (args.format,)
    settings = dag_bench.Settings(
        rows=tuple(args.rows), features=args.features, tasks=args.tasks, formats=formats,
        files=args.files, train_steps=args.train_steps, run_args=tuple(args.run_arg),
        work_dir=args.work_dir, interval=args.interval, keep_runs=args.keep_runs)
    def partial(report) -> None:  # after every run, so a stopped benchmark keeps its runs
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2, sort_keys=True)

    report = dag_bench.run(settings,
                           lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True),
                           partial)
    m = report["machine"]
    print(f"tfx-mtl bench dag: {settings.features} features, {settings.tasks} tasks, "
          f"{settings.train_steps} train steps; {m['nproc']} CPUs, load (1/5/15 min) "
          f"{' '.join(f'{x:.2f}' for x in m['load_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in m['load_after'])} after; took {m['seconds']:.0f} s")
    print(f"`{report['command']}`\n")
    print(dag_bench.markdown(report))
    _write_json(args.json, report)
    return 0


def _write_json(path: str | None, data) -> None:
    """Writes a benchmark's results to ``--json``, if given."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"results written to {path}")


def _widths(units) -> str:
    return "-".join(map(str, units))
