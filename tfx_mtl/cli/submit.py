"""``tfx-mtl submit``: submit a compiled KFP v2 pipeline package as a run or recurring run.

Bad input (package, ``--param``, ``--recurring``, ...) is refused before any request is
made; an error from the KFP API prints its HTTP status and the server's message and
returns 1. Credentials: see
``tfx_mtl.kubeflow.submit`` (``KFP_BEARER_TOKEN`` and what ``kfp.Client`` reads itself).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from tfx_mtl.cli import options

_CREDENTIALS = """\
credentials (never written nor printed):
  KFP_BEARER_TOKEN            a bearer token, sent as "Authorization: Bearer <token>"
  KF_PIPELINES_SA_TOKEN_PATH  a token file re-read before each request (default, if it
                              exists: /var/run/secrets/kubeflow/pipelines/token)
  and what kfp.Client reads itself: KF_PIPELINES_IAP_OAUTH2_CLIENT_ID (+ APP_OAUTH2_
  CLIENT_ID/_SECRET) for IAP, a Google token for *.googleusercontent.com hosts, the
  cookie/header in ~/.config/kfp/context.json; with no --host nor KF_PIPELINES_ENDPOINT,
  the in-cluster service or the kube config's current context.
  KF_PIPELINES_UI_ENDPOINT overrides the host in the printed UI link.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "submit", help="submit a compiled KFP v2 pipeline (tfx-mtl compile) to Kubeflow "
                       "Pipelines as a run or a recurring run",
        description="Loads the package written by `tfx-mtl compile` (JSON or YAML), types the\n"
                    "--param values by the pipeline's declared parameters, and creates a run\n"
                    "(or, with --recurring, a recurring run) in an experiment through\n"
                    "kfp.Client. Prints the id and the KFP UI link.",
        epilog=_CREDENTIALS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", metavar="URL",
                   help="KFP API endpoint, e.g. http://localhost:8080 "
                        "(default: $KF_PIPELINES_ENDPOINT)")
    p.add_argument("--package", required=True, metavar="FILE",
                   help="compiled pipeline (.json or .yaml from tfx-mtl compile)")
    p.add_argument("--experiment", default="tfx-mtl", metavar="NAME",
                   help="experiment, created if missing (default: tfx-mtl)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter; VALUE is typed by the declared type "
                        "(int, float, true/false, JSON for lists and structs). Repeatable")
    p.add_argument("--run-name", metavar="NAME",
                   help="run / recurring run name (default: '<pipeline name> <timestamp>')")
    p.add_argument("--namespace", metavar="NS",
                   help="namespace of the experiment (multi-user Kubeflow)")
    p.add_argument("--pipeline-root", metavar="URI",
                   help="root for the run's artifacts (default: the JSON package's, else the "
                        "pipeline's or the server's default)")
    p.add_argument("--recurring", metavar="CRON",
                   help="create a recurring run on this cron schedule: 5 fields "
                        "('0 3 * * *') or KFP's 6 with seconds first ('0 0 3 * * *')")
    p.add_argument("--max-concurrency", type=options.positive_int, metavar="N",
                   help="recurring runs allowed at once, 1-10 (default: 1)")
    p.set_defaults(func=run)


def _submission(args: argparse.Namespace):
    """Validates every input (no request made); raises submit.SubmitError."""
    from tfx_mtl.kubeflow import submit
    from tfx_mtl.runners import kubeflow as compiler

    package = submit.load_package(args.package)
    parameters = submit.run_parameters(package, args.param)
    for name, problem in compiler.run_value_problems(parameters):
        raise submit.SubmitError(f"--param {name}", problem)
    cron = submit.kfp_cron(args.recurring) if args.recurring is not None else None
    return submit.Submission(
        package=package, parameters=parameters,
        experiment=submit.check_name("--experiment", args.experiment),
        run_name=(submit.check_name("--run-name", args.run_name) if args.run_name is not None
                  else submit.default_run_name(package)),
        namespace=args.namespace or None, cron=cron,
        max_concurrency=submit.check_max_concurrency(args.max_concurrency, cron is not None),
        pipeline_root=args.pipeline_root or package.pipeline_root)


class _NoTraceback(logging.Formatter):
    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return ""


@contextlib.contextmanager
def _short_client_logs():
    """kfp logs each failed healthz attempt with a traceback; keep the message only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NoTraceback("%(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def run(args: argparse.Namespace) -> int:
    import kfp_server_api
    import urllib3

    from tfx_mtl.kubeflow import submit

    def fail(message: str) -> int:
        print(f"tfx-mtl submit: error: {message}", file=sys.stderr)
        return 1

    host = args.host or os.environ.get(submit.ENDPOINT_ENV) or None
    sub = _submission(args)
    try:
        with _short_client_logs():
            client = submit.make_client(host)
            done = submit.submit(client, sub)
    except kfp_server_api.ApiException as e:
        return fail(f"KFP API: HTTP {e.status}: {submit.api_error_message(e.body, e.reason)}")
    except urllib3.exceptions.HTTPError as e:
        reason = getattr(e, "reason", None) or e
        return fail(f"KFP API at {host or '(kfp default)'} unreachable: {reason}")
    except (TimeoutError, ValueError) as e:  # healthz retries exhausted; ambiguous experiment
        return fail(f"KFP API: {e}")
    print(f"experiment: {sub.experiment} ({done.experiment_id})")
    print(f"{done.kind} id: {done.id}")
    url = submit.ui_url(submit.ui_base(host, os.environ), done.kind, done.id)
    print(f"{done.kind} details: {url}")
    return 0
