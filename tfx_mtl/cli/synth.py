"""``tfx-mtl synth``: write a synthetic multi-task dataset and its task spec.

A combination the generator refuses (e.g. a correlation out of range for the
number of tasks) is bad input; :data:`FIELDS` maps the generator's field to the
option that sets it.
"""
from __future__ import annotations

import argparse
import shlex

from tfx_mtl import synth
from tfx_mtl.cli import options

# SynthConfig / write() field -> the option that sets it, for error messages.
FIELDS = {"rows": "--rows", "tasks": "--tasks", "correlation": "--correlation",
          "features": "--features", "seed": "--seed", "noise": "--noise",
          "scale_c": "--scale-c", "label_scales": "--label-scales",
          "task_types": "--task-types", "out_dir": "--out", "fmt": "--format",
          "files": "--files"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="write synthetic multi-task data whose task relatedness you choose",
        description="Writes DIR/data.csv (or data.tfrecord) and DIR/tasks.yaml: K tasks whose "
                    "weight vectors have pairwise cosine similarity RHO, built as in the MMoE "
                    "paper (Ma et al., KDD 2018, section 3.2). The same arguments give "
                    "byte-identical files.")
    p.add_argument("--rows", type=options.positive_int, required=True, metavar="N",
                   help="rows to write")
    p.add_argument("--tasks", type=options.positive_int, required=True, metavar="K",
                   help="number of tasks K")
    p.add_argument("--correlation", type=options.number, required=True, metavar="RHO",
                   help="cosine similarity RHO of every pair of task weight vectors, "
                        "in (-1/(K-1), 1]")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--features", type=options.positive_int, default=100, metavar="D",
                   help="input dimension d, at least K (default: 100)")
    p.add_argument("--seed", type=options.non_negative_int, default=0, metavar="S",
                   help="random seed (default: 0)")
    p.add_argument("--noise", type=options.number, default=0.1, metavar="X",
                   help="standard deviation of the label noise (default: 0.1)")
    p.add_argument("--scale-c", type=options.number, default=1.0, metavar="C",
                   help="norm c of every weight vector (default: 1.0)")
    p.add_argument("--label-scales", type=options.number_list, metavar="S1,S2,...",
                   help="one positive factor per task multiplying its label, e.g. 1,1000 "
                        "(regression tasks then get standardize: false)")
    p.add_argument("--task-types", type=options.word_list, metavar="T1,T2,...",
                   help="one of regression|binary per task (default: all regression)")
    p.add_argument("--format", choices=synth.FORMATS, default="csv",
                   help="data file format (default: csv)")
    p.add_argument("--files", type=options.positive_int, default=1, metavar="N",
                   help="write the rows as N files part-00000-of-0000N.csv (.tfrecord) of "
                        "consecutive rows, which --data DIR reads as one input (default: 1, "
                        "data.csv / data.tfrecord)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing non-empty data files (data.csv, data.tfrecord, "
                        "part-*) in --out")
    p.set_defaults(func=run, fields=FIELDS)


def run(args: argparse.Namespace) -> int:
    config = synth.SynthConfig(
        rows=args.rows, tasks=args.tasks, correlation=args.correlation,
        features=args.features, seed=args.seed, noise=args.noise, scale_c=args.scale_c,
        label_scales=args.label_scales, task_types=args.task_types)
    result = synth.write(config, args.out, fmt=args.format, overwrite=args.overwrite,
                         files=args.files)
    in_files = f" in {result['files']} files" if result["files"] > 1 else ""
    print(f"wrote {result['rows']} rows x {result['columns']} columns to "
          f"{result['data']}{in_files} in {result['seconds']:.1f} s")
    print(f"task spec: {result['spec']}")
    print(f"run it: tfx-mtl run --data {shlex.quote(result['data'])} "
          f"--spec {shlex.quote(result['spec'])}")
    return 0
