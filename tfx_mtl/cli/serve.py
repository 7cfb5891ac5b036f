"""``tfx-mtl serve``: the development server for a pushed model (TF Serving's gRPC API).

A bad ``--model-base`` (missing, or holding no loadable version) or a port that cannot be
bound is bad input, named. Runs until Ctrl-C or SIGTERM, then stops gracefully (running
requests finish). Logs loads, swaps, failed loads, refused requests and errors to stderr,
each line with a UTC timestamp.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time

from tfx_mtl.cli import options
from tfx_mtl.errors import InputError
from tfx_mtl.serving.request_checks import DEFAULT_MAX_BATCH_SIZE

GRACE_SECONDS = 5.0
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the newest pushed model version over TF Serving's gRPC API (dev)",
        description="Serves the newest version under --model-base (Pusher's <base>/<version>/) "
                    "through tensorflow.serving.PredictionService (Predict, Classify, Regress, "
                    "GetModelMetadata) and ModelService (GetModelStatus), polling for new "
                    "versions and swapping them in without dropping requests. For development "
                    "and tests; in production run TF Serving itself (kubeflow/serving/).")
    p.add_argument("--model-base", required=True, metavar="DIR",
                   help="the model's base directory, holding numbered version directories")
    p.add_argument("--model-name", required=True, metavar="NAME",
                   help="the model name clients put in ModelSpec.name")
    p.add_argument("--port", type=options.non_negative_int, default=8500,
                   help="gRPC port (default: 8500, TF Serving's; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--poll-seconds", type=options.positive_number, default=1.0, metavar="S",
                   help="how often to look for a new version (default: 1)")
    p.add_argument("--max-message-mb", type=options.positive_number, default=4.0, metavar="MB",
                   help="largest request accepted, in MiB (default: 4, grpc's default)")
    p.add_argument("--max-batch-size", type=options.positive_int,
                   default=DEFAULT_MAX_BATCH_SIZE, metavar="N",
                   help="most rows (examples) one request may carry; more is refused "
                        f"(INVALID_ARGUMENT) before anything is allocated (default: "
                        f"{DEFAULT_MAX_BATCH_SIZE}, TF Serving's batching default)")
    p.set_defaults(func=run, fields={"model_base": "--model-base"})


@contextlib.contextmanager
def _stderr_logging():
    """The project's loggers (``tfx_mtl.*``) at INFO to stderr with UTC timestamps, for as
    long as the server runs. An own handler, not ``logging.basicConfig``: that does nothing
    once an import has put a handler on the root logger (importing tfx does), which left
    loads and swaps unlogged. Not propagated to the root, so no line is printed twice; the
    logger is restored afterwards (the command can run inside another program's process)."""
    logger = logging.getLogger("tfx_mtl")
    formatter = logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def run(args: argparse.Namespace) -> int:
    with _stderr_logging():
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from tfx_mtl.serving import server as server_mod

    try:
        srv = server_mod.start(args.model_base, args.model_name, host=args.host, port=args.port,
                               poll_seconds=args.poll_seconds,
                               max_message_bytes=int(args.max_message_mb * 1024 * 1024),
                               max_batch_size=args.max_batch_size)
    except OSError as e:
        raise InputError("--host/--port", str(e)) from None
    print(f"serving model {args.model_name} version {srv.versions()[0]} "
          f"from {srv.store.base} on {srv.address}", flush=True)

    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopping (running requests finish)", flush=True)
        srv.stop(GRACE_SECONDS)
    print("stopped", flush=True)
    return 0
