"""What several ``tfx-mtl`` commands share: argparse value types and options declared once.

The value types raise ``argparse.ArgumentTypeError`` with the offending text, so
argparse reports the option by name and exits with status 2. The options
(steps, batch size, the spec, the model and the multi-task method) are added by
one function each; :func:`trainer_options` turns the model and method options
into :class:`~tfx_mtl.models.trainer_config.TrainerConfig` fields.
"""
from __future__ import annotations

import argparse
import math

from tfx_mtl.errors import InputError
from tfx_mtl.run_parameters import DEFAULT_TRAIN_STEPS as TRAIN_STEPS


def _int(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int(text, 0, "a non-negative integer")


def number(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def number_list(text: str) -> tuple[float, ...]:
    """Comma-separated finite floats: ``1,1000``."""
    return tuple(number(part.strip()) for part in text.split(","))


def word_list(text: str) -> tuple[str, ...]:
    """Comma-separated words: ``regression,binary``."""
    return tuple(part.strip() for part in text.split(","))


def assignment(text: str) -> tuple[str, object]:
    """``NAME=VALUE``: VALUE as an int, else a float, else true/false, else the text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    value = value.strip()
    for convert in (int, float):
        try:
            return name.strip(), convert(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return name.strip(), value.lower() == "true"
    return name.strip(), value


def units(text: str) -> tuple[int, ...]:
    """Comma-separated layer widths: ``256,256``."""
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive layer widths, got {text!r}")
    return widths


# -- options -------------------------------------------------------------------
def add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", help="task spec YAML (default: the bundled taxi spec)")


def add_steps_and_batch(p: argparse.ArgumentParser, train_steps_help: str) -> None:
    """--train-steps or --train-epochs (one budget: argparse names both when both are
    given), --eval-steps and --batch-size. Unset, ``train_steps`` is None:
    :func:`train_steps` gives the default."""
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--train-steps", type=positive_int,
                        help=f"{train_steps_help}: a cap; each Trainer stops early when its "
                             f"validation loss stops improving (default: {TRAIN_STEPS})")
    budget.add_argument("--train-epochs", type=positive_number, metavar="E",
                        help="the budget in epochs instead: each Trainer counts its train "
                             "split's examples when it starts and trains at most "
                             "ceil(E * examples / batch size) steps, still stopping early")
    p.add_argument("--eval-steps", type=positive_int, default=50,
                   help="at most this many validation batches per Trainer evaluation "
                        "(default: 50)")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="global training batch size (default: 128)")


def train_steps(args: argparse.Namespace) -> int:
    """The --train-steps given, else the default (with --train-epochs, steps are the
    Trainer's to work out and this number is not used)."""
    return args.train_steps or TRAIN_STEPS


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Model and optimiser options; unset ones keep the spec's trainer section, then the
    TrainerConfig defaults (docs/models_and_methods.md lists the methods)."""
    g = p.add_argument_group("model and multi-task optimiser")
    g.add_argument("--model", dest="arch_name",
                   help="shared_bottom (default), mmoe, ple or cross_stitch")
    g.add_argument("--experts", dest="arch_experts", type=positive_int,
                   help="MMoE experts / PLE shared experts per level")
    g.add_argument("--task-experts", dest="arch_task_experts", type=positive_int,
                   help="PLE task-specific experts per task and level")
    g.add_argument("--levels", dest="arch_levels", type=positive_int,
                   help="PLE extraction levels (1 = CGC)")
    g.add_argument("--hidden-units", dest="arch_hidden_units", type=units,
                   help="widths of the trunk / each expert / each column, e.g. 256,256")
    g.add_argument("--tower-units", dest="arch_tower_units", type=units,
                   help="widths of each task tower, e.g. 32")
    g.add_argument("--dropout", dest="arch_dropout", type=number, help="dropout rate")
    g.add_argument("--tasks", type=word_list, metavar="T1,T2,...",
                   help="the tasks to train (default: every task of the spec); each is "
                        "still compared with its single-task baseline")
    g.add_argument("--weighting", help="a registered loss weighting: uniform (default), "
                                       "uncertainty, gradnorm, dwa, ...")
    g.add_argument("--weighting-param", dest="weighting_params", action="append",
                   type=assignment, metavar="NAME=VALUE",
                   help="a parameter of the weighting, e.g. alpha=1.5 (repeatable)")
    g.add_argument("--combine", help="a registered gradient combination: sum (default), "
                                     "pcgrad, cagrad, mgda, mgda_ub, ...")
    g.add_argument("--combine-param", dest="combine_params", action="append",
                   type=assignment, metavar="NAME=VALUE",
                   help="a parameter of the combination, e.g. c=0.4 (repeatable)")
    g.add_argument("--surgery-level", dest="surgery_level",
                   choices=("parameters", "representation"),
                   help="which per-task gradients the combination acts on: of the shared "
                        "parameters (default) or of the shared representation (K backward "
                        "passes through the heads only, one through the trunk); nothing "
                        "changes with sum")
    g.add_argument("--learning-rate", type=positive_number,
                   help="Adam's learning rate (default 1e-3)")
    g.add_argument("--seed", type=non_negative_int, help="random seed (default 42)")
    g.add_argument("--checkpoint-every", type=non_negative_int,
                   help="steps between checkpoints in the Trainer's run directory (default 500)")
    g.add_argument("--log-every", type=positive_int,
                   help="steps between log lines and TensorBoard points (default 50)")
    g.add_argument("--eval-every", type=non_negative_int,
                   help="steps between the Trainers' evaluations on the validation split, "
                        "which select each model (its best evaluation's weights are kept) "
                        "and stop it early; also at the last step. 0: no evaluation, the "
                        "last step's weights (needs --early-stopping 0) "
                        "(default: 100)")
    g.add_argument("--cpu-replicas", type=positive_int,
                   help="split the CPU into N logical devices and train under MirroredStrategy")
    g.add_argument("--early-stopping", dest="early_stopping_patience",
                   type=non_negative_int,
                   help="stop a Trainer after this many evaluations without improvement of "
                        "its normalised validation loss (the mean over its tasks of each "
                        "task's validation loss over its first value; a baseline's is its "
                        "task's validation loss). 0: train to --train-steps, still keeping "
                        "the best evaluation (default: 10)")


def trainer_options(args: argparse.Namespace) -> dict:
    """The TrainerConfig fields set on the command line."""
    options = {"batch_size": args.batch_size}
    if getattr(args, "train_epochs", None) is not None:
        options["train_epochs"] = args.train_epochs
    elif getattr(args, "train_steps", None) is not None:
        options["train_epochs"] = None  # --train-steps over a spec's trainer.train_epochs
    arch = {key[len("arch_"):]: value for key, value in vars(args).items()
            if key.startswith("arch_") and value is not None}
    if arch:
        options["architecture"] = arch
    for key in ("tasks", "weighting", "combine", "surgery_level", "learning_rate", "seed",
                "checkpoint_every", "log_every", "eval_every", "early_stopping_patience"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    for key, option in (("weighting_params", "--weighting-param"),
                        ("combine_params", "--combine-param")):
        pairs = getattr(args, key, None) or []
        names = [name for name, _ in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(option, f"{', '.join(repeated)} given more than once")
        if pairs:
            options[key] = dict(pairs)
    return options
