"""``tfx-mtl query``: send JSON-lines rows to a TF Serving (or ``tfx-mtl serve``) model.

Prints one JSON object per input row, in input order: every task's outputs
(``{"fare": {"value": 12.3}, "big_tipper": {"probability": 0.4, "class_id": 0}}``), or
with ``--task`` that task's outputs alone. Bad input (unreadable file, bad JSON, a row the
schema refuses) is refused naming the file and line before anything is sent; an error
from the server exits 1 with its status code name and message.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys

from tfx_mtl.cli import options
from tfx_mtl.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "query", help="send raw feature rows (JSON lines) to a served model, print predictions",
        description="Reads one JSON object of raw features per line, sends them as serialized "
                    "tf.Examples to TF Serving's gRPC PredictionService (in batches), and "
                    "prints one JSON object per row: every task's outputs, or --task's.")
    p.add_argument("--server", required=True, metavar="HOST:PORT",
                   help="the gRPC address, e.g. 127.0.0.1:8500")
    p.add_argument("--model", required=True, metavar="NAME", help="the model name")
    p.add_argument("--task", help="call this task's signature only (default: every task "
                                  "through serving_default)")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="JSON lines of raw features, one row per line ('-': stdin)")
    p.add_argument("--schema", metavar="SCHEMA",
                   help="tensorflow_metadata Schema (pbtxt) typing the features, e.g. "
                        "schemas/chicago_taxi/schema.pbtxt (default: typed by the JSON values)")
    p.add_argument("--ignore-extra", action="store_true",
                   help="with --schema: drop columns the schema does not know instead of "
                        "failing")
    p.add_argument("--version", type=options.positive_int,
                   help="a model version to pin (default: the newest served)")
    p.add_argument("--timeout", type=options.positive_number, default=10.0, metavar="S",
                   help="seconds per request (default: 10)")
    p.add_argument("--retries", type=options.non_negative_int, default=3,
                   help="retries of a request that finds the server UNAVAILABLE (default: 3)")
    p.add_argument("--batch", type=options.positive_int, default=64, metavar="N",
                   help="rows per request (default: 64)")
    p.set_defaults(func=run)


def _read_rows(args) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line; InputError naming the file and line."""
    name = "<stdin>" if args.input == "-" else args.input
    try:
        f = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as e:
        raise InputError("--input", f"{name}: {e.strerror}") from None
    rows = []
    with f if args.input != "-" else contextlib.nullcontext(f):
        for number, raw in enumerate(f, start=1):
            where = f"{name}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(where, "not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(where, f"not JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(row, dict):
                raise InputError(where, f"expected a JSON object of features, "
                                        f"got {type(row).__name__}")
            rows.append((number, row))
    return rows


def _plain(value):
    """A NumPy value as plain JSON (non-finite floats -> null)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def run(args: argparse.Namespace) -> int:
    from tfx_mtl.serving.examples import RowEncoder, RowError

    if args.ignore_extra and not args.schema:
        raise InputError("--ignore-extra", "needs --schema")
    try:
        encoder = (RowEncoder.from_schema_file(args.schema,
                                               extra="ignore" if args.ignore_extra else "error")
                   if args.schema else RowEncoder())
    except OSError as e:
        raise InputError("--schema", f"{args.schema}: {e.strerror}") from None
    except ValueError as e:
        raise InputError("--schema", str(e)) from None
    rows = _read_rows(args)
    name = "<stdin>" if args.input == "-" else args.input
    examples = []
    for number, row in rows:
        try:
            examples.append(encoder.encode(row, index=number))
        except RowError as e:
            where = f", feature {e.feature!r}" if e.feature is not None else ""
            raise InputError(f"{name}, line {number}{where}", e.message) from None

    from tfx_mtl.serving.client import ServingClient, ServingError

    with ServingClient(args.server, args.model, version=args.version, timeout=args.timeout,
                       retries=args.retries, encoder=encoder) as client:
        try:
            for start in range(0, len(examples), args.batch):
                batch = examples[start:start + args.batch]
                if args.task:
                    outputs = client.predict(args.task, batch)
                    results = [{k: _plain(v[i]) for k, v in outputs.items()}
                               for i in range(len(batch))]
                else:
                    outputs = client.predict_all(batch)
                    results = [{task: {k: _plain(v[i]) for k, v in out.items()}
                                for task, out in outputs.items()} for i in range(len(batch))]
                for result in results:
                    print(json.dumps(result, sort_keys=True))
                sys.stdout.flush()
        except ServingError as e:
            print(f"tfx-mtl query: error: {e.code.name}: {e.details}"
                  + (f" (task {e.task!r})" if e.task else ""), file=sys.stderr)
            return 1
    return 0
