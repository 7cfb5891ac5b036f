"""``tfx-mtl serve``: the development server for a pushed model (TF Serving's gRPC API).

A bad ``--model-base`` (missing, or holding no loadable version) or a port that cannot be
bound is bad input, named. Runs until Ctrl-C or SIGTERM, then stops gracefully (running
requests finish).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from tfx_mtl.cli import options
from tfx_mtl.errors import InputError
from tfx_mtl.serving.request_checks import DEFAULT_MAX_BATCH_SIZE

GRACE_SECONDS = 5.0


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


def run(args: argparse.Namespace) -> int:
    from tfx_mtl.serving import server as server_mod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
