"""``tfx-mtl synth``: write a synthetic multi-task dataset and its task spec.

Register with ``add_parser(subparsers)``. Argument syntax errors exit 2 through
argparse; a combination the generator refuses (e.g. a correlation out of range
for the number of tasks) makes :func:`run` print a message naming the option
and return 2.
"""
from __future__ import annotations

import argparse
import sys

from tfx_mtl import arg_types, synth

# SynthConfig / write() field -> the option that sets it, for error messages.
_OPTIONS = {"rows": "--rows", "tasks": "--tasks", "correlation": "--correlation",
            "features": "--features", "seed": "--seed", "noise": "--noise",
            "scale_c": "--scale-c", "label_scales": "--label-scales",
            "task_types": "--task-types", "out_dir": "--out", "fmt": "--format"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="write synthetic multi-task data whose task relatedness you choose",
        description="Writes DIR/data.csv (or data.tfrecord) and DIR/tasks.yaml: K tasks whose "
                    "weight vectors have pairwise cosine similarity RHO, built as in the MMoE "
                    "paper (Ma et al., KDD 2018, section 3.2). The same arguments give "
                    "byte-identical files.")
    p.add_argument("--rows", type=arg_types.positive_int, required=True, metavar="N",
                   help="rows to write")
    p.add_argument("--tasks", type=arg_types.positive_int, required=True, metavar="K",
                   help="number of tasks K")
    p.add_argument("--correlation", type=arg_types.number, required=True, metavar="RHO",
                   help="cosine similarity RHO of every pair of task weight vectors, "
                        "in (-1/(K-1), 1]")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--features", type=arg_types.positive_int, default=100, metavar="D",
                   help="input dimension d, at least K (default: 100)")
    p.add_argument("--seed", type=arg_types.non_negative_int, default=0, metavar="S",
                   help="random seed (default: 0)")
    p.add_argument("--noise", type=arg_types.number, default=0.1, metavar="X",
                   help="standard deviation of the label noise (default: 0.1)")
    p.add_argument("--scale-c", type=arg_types.number, default=1.0, metavar="C",
                   help="norm c of every weight vector (default: 1.0)")
    p.add_argument("--label-scales", type=arg_types.number_list, metavar="S1,S2,...",
                   help="one positive factor per task multiplying its label, e.g. 1,1000 "
                        "(regression tasks then get standardize: false)")
    p.add_argument("--task-types", type=arg_types.word_list, metavar="T1,T2,...",
                   help="one of regression|binary per task (default: all regression)")
    p.add_argument("--format", choices=synth.FORMATS, default="csv",
                   help="data file format (default: csv)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty data.csv / data.tfrecord in --out")
    p.set_defaults(func=run)


def _option(field: str) -> str:
    base = field.split("[", 1)[0]
    return _OPTIONS.get(base, base) + field[len(base):]


def run(args: argparse.Namespace) -> int:
    try:
        config = synth.SynthConfig(
            rows=args.rows, tasks=args.tasks, correlation=args.correlation,
            features=args.features, seed=args.seed, noise=args.noise, scale_c=args.scale_c,
            label_scales=args.label_scales, task_types=args.task_types)
        result = synth.write(config, args.out, fmt=args.format, overwrite=args.overwrite)
    except synth.SynthError as e:
        print(f"tfx-mtl synth: error: {_option(e.field)}: {e.message}", file=sys.stderr)
        return 2
    print(f"wrote {result['rows']} rows x {result['columns']} columns to {result['data']} "
          f"in {result['seconds']:.1f} s")
    print(f"task spec: {result['spec']}")
    return 0
