"""The ``tfx-mtl`` command line: one sub-command per user job, one module per command.

Each command module has ``add_parser(subparsers)``, which sets ``func`` (the
command itself, returning an exit status) and, where an error's field is a
setting rather than an option, ``fields`` (field -> the option that sets it).
Bad input of any kind is an :class:`~tfx_mtl.errors.InputError`: exit status 2,
with the field it names. Anything else exits 1: a failed pipeline with the log
file that holds its traceback, any other error with its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import Sequence

from tfx_mtl import log_capture
from tfx_mtl.cli import bench, compile, query, run, serve, submit, synth
from tfx_mtl.errors import InputError

COMMANDS = (run, synth, bench, serve, query, compile, submit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfx-mtl", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow's and its libraries' start-up chatter goes to the command's log file
    # (log_capture); only the command's own messages reach the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    prog = f"tfx-mtl {args.command}"
    log_file = log_capture.command_log_file(args.command)
    try:
        with log_capture.LogCapture(log_file) if log_file else contextlib.nullcontext():
            return args.func(args)
    except InputError as e:
        print(f"{prog}: error: {_option(e.field, getattr(args, 'fields', {}))}: {e.message}",
              file=sys.stderr)
        return 2
    except Exception as e:
        if getattr(e, "log_file", None) is None:  # not a failure a run's log explains
            traceback.print_exc()
            if log_file:
                print(f"{prog}: full log in {log_file}", file=sys.stderr)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def _option(field: str, fields) -> str:
    """The option that sets ``field`` (``label_scales[1]`` -> ``--label-scales[1]``), else it."""
    base = field.split("[", 1)[0]
    return fields[base] + field[len(base):] if base in fields else field


if __name__ == "__main__":
    sys.exit(main())
