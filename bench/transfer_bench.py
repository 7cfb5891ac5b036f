"""The MMoE paper's synthetic experiment (Ma et al., KDD 2018, section 3.2 and figure 4).

Shared-bottom, MMoE and OMoE (MMoE with one gate shared by every task) on
``tfx_mtl.synth`` data with two regression tasks whose weight vectors have cosine
``rho``, for each rho and seed: does the gain of MMoE over a shared bottom grow
as the tasks drift apart?

Sizes, as the paper sets them: 100 features; every MoE has ``experts`` one-layer
experts of ``expert_units``; every model has one-layer towers of ``tower_units``;
the shared bottom is one layer whose width :func:`matched_width` solves for so
that the weights of the shared part plus the towers match the MoE's (the paper:
8 experts of 16, towers of 8 -> a 113-unit shared bottom; 100*16*8 + 2*16*8 =
13,056 weights vs 100*113 + 2*113*8 = 13,108, +0.4%). As in the paper, biases and
the gates (2 * (100*8 + 8) = 1,616 in MMoE, half that in OMoE) are not counted:
the gates are what is being tested. :func:`parameter_counts` gives both counts.

Each model is trained in this process by the project's own builders
(``models.families``) and ``TrainingLoop`` (sum + uniform, Adam), selected on
the validation split (the loop's early stopping: its best evaluation's weights),
and scored on the test split: the mean over tasks of each task's test loss (mse
on labels standardised with the train split's mean and SD, so 1.0 is predicting
the mean). Seed s generates the data (``SynthConfig.seed = s``) and initialises
the models, so a seed's models see the same rows and are compared paired.
Interval: mean +/- t(0.975, n-1) * SD / sqrt(n) over seeds.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
import statistics
import time
from typing import Any, Callable, Sequence

from tfx_mtl.bench.errors import BenchError

MODELS = ("shared_bottom", "mmoe", "omoe")
TASKS = 2
FEATURES = 100
# Two-sided 95% Student t quantiles by degrees of freedom (1..30); larger: 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    rhos: tuple[float, ...] = (0.0, 0.5, 0.9, 1.0)
    seeds: int = 3  # seeds 0 .. seeds-1
    models: tuple[str, ...] = MODELS
    train_rows: int = 50_000  # at 10,000 every model overfits and MMoE loses (docs/MMOE.md)
    validation_rows: int = 2_000
    test_rows: int = 2_000
    steps: int = 1_000  # cap; the loop stops earlier when validation stops improving
    batch_size: int = 512
    learning_rate: float = 3e-3
    eval_every: int = 100
    patience: int = 5
    experts: int = 8
    expert_units: int = 16
    tower_units: int = 8

    def __post_init__(self):
        for name in ("rhos", "models"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raises :class:`BenchError` naming the first invalid field."""
        for name in ("seeds", "train_rows", "validation_rows", "test_rows", "steps",
                     "batch_size", "eval_every", "experts", "expert_units", "tower_units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(name, f"must be a positive integer, got {value!r}")
        if self.patience < 0 or isinstance(self.patience, bool):
            raise BenchError("patience", f"must be an integer >= 0, got {self.patience!r}")
        if not self.rhos or not all(isinstance(r, (int, float)) and not isinstance(r, bool)
                                    and -1 < r <= 1 for r in self.rhos):
            raise BenchError("rhos", f"must be numbers in (-1, 1] (two tasks), got "
                                     f"{list(self.rhos)!r}")
        if not self.models or any(m not in MODELS for m in self.models):
            raise BenchError("models", f"must be some of {', '.join(MODELS)}, got "
                                       f"{list(self.models)!r}")
        for name in ("train_rows", "validation_rows", "test_rows"):
            if getattr(self, name) < self.batch_size:
                raise BenchError(name, f"must be at least batch_size ({self.batch_size}), "
                                       f"got {getattr(self, name)}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise BenchError("learning_rate", f"must be a positive number, "
                                              f"got {self.learning_rate!r}")

    @property
    def shared_bottom_units(self) -> int:
        return matched_width(FEATURES, TASKS, self.experts, self.expert_units, self.tower_units)


# -- the arithmetic (pure) ----------------------------------------------------

def moe_weights(features: int, tasks: int, experts: int, expert_units: int,
                tower_units: int) -> int:
    """Weights (no biases, no gates) of the experts and the towers, as the paper counts."""
    return features * expert_units * experts + tasks * expert_units * tower_units


def shared_bottom_weights(features: int, tasks: int, units: int, tower_units: int) -> int:
    """Weights (no biases) of a one-layer shared bottom of ``units`` and the towers."""
    return features * units + tasks * units * tower_units


def matched_width(features: int, tasks: int, experts: int, expert_units: int,
                  tower_units: int) -> int:
    """The shared bottom's width whose weights come nearest the MoE's (the paper: 113)."""
    target = moe_weights(features, tasks, experts, expert_units, tower_units)
    return max(1, round(target / (features + tasks * tower_units)))


def parameter_counts(features: int, tasks: int, experts: int, expert_units: int,
                     tower_units: int, units: int) -> dict[str, dict[str, int]]:
    """Per model: ``weights`` (the paper's count) and ``all`` (with biases, gates, heads)."""
    towers_and_heads = tasks * (tower_units + tower_units + 1)  # tower biases, head w and b

    def moe(gates: int) -> int:
        return (experts * (features * expert_units + expert_units)
                + gates * (features * experts + experts)
                + tasks * expert_units * tower_units + towers_and_heads)

    return {
        "shared_bottom": {"weights": shared_bottom_weights(features, tasks, units, tower_units),
                          "all": features * units + units + tasks * units * tower_units
                          + towers_and_heads},
        "mmoe": {"weights": moe_weights(features, tasks, experts, expert_units, tower_units),
                 "all": moe(tasks)},
        "omoe": {"weights": moe_weights(features, tasks, experts, expert_units, tower_units),
                 "all": moe(1)}}


def interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval); half-width 0 for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def gate_stats(gates: Any) -> dict[str, Any]:
    """Of softmax gates [rows, E]: the mean weight of each expert, the mean entropy (nats)
    of a row's gate and the entropy of the mean gate (ln E: all experts used equally)."""
    import numpy as np

    gates = np.asarray(gates, np.float64)
    mean = gates.mean(axis=0)
    row_entropy = -(gates * np.log(np.clip(gates, 1e-12, None))).sum(axis=1).mean()
    return {"mean": [float(v) for v in mean], "row_entropy": float(row_entropy),
            "mean_entropy": float(-(mean * np.log(np.clip(mean, 1e-12, None))).sum()),
            "max_entropy": float(math.log(gates.shape[1]))}


# -- training (real) ----------------------------------------------------------

def _arrays(rho: float, seed: int, settings: TransferSettings):
    from tfx_mtl import synth
    from tfx_mtl.models import synthetic_input

    rows = settings.train_rows + settings.validation_rows + settings.test_rows
    config = synth.SynthConfig(rows=rows, tasks=TASKS, correlation=float(rho),
                               features=FEATURES, seed=seed)
    spec = synthetic_input.spec(config)
    arrays = synthetic_input.transformed(synth.sample(config), spec)
    cuts = {"train": (0, settings.train_rows),
            "validation": (settings.train_rows, settings.train_rows + settings.validation_rows),
            "test": (rows - settings.test_rows, rows)}
    splits = {name: {k: v[a:b] for k, v in arrays.items()} for name, (a, b) in cuts.items()}
    return spec, splits


def build(name: str, spec, settings: TransferSettings):
    """The network of ``name`` with the settings' sizes; OMoE is built here (not a family)."""
    from tfx_mtl.models import blocks, families, features
    from tfx_mtl.models.architecture import ArchitectureConfig
    from tfx_mtl.models.network import Network

    towers = (settings.tower_units,)
    if name == "shared_bottom":
        return families.build(spec, {}, None, ArchitectureConfig(
            name=name, hidden_units=(settings.shared_bottom_units,), tower_units=towers))
    config = ArchitectureConfig(name="mmoe", hidden_units=(settings.expert_units,),
                                tower_units=towers, experts=settings.experts)
    if name == "mmoe":
        return families.build(spec, {}, None, config)
    inputs, x = features.input_layer(spec, {})
    experts, last = zip(*(blocks.expert(x, config, f"expert_{e}")
                          for e in range(settings.experts)))
    mixed = blocks.gated_mixture(x, list(experts), "shared")  # one gate for every task
    outputs = {task.name: blocks.tower_and_head(mixed, task, config, {}) for task in spec.tasks}
    return Network.from_tensors("omoe", inputs, outputs, [mixed], last)


def gate_layers(name: str, spec) -> list[str]:
    return {"mmoe": [f"{t}_gate" for t in spec.task_names], "omoe": ["shared_gate"]}.get(name, [])


class _Run:
    """One model on one seed's data: its network, loop, batches, evaluator and gates."""

    def __init__(self, name: str, rho: float, seed: int, settings: TransferSettings,
                 data=None, selecting: bool = True):
        import tensorflow as tf

        from tfx_mtl.models import eval_metrics, synthetic_input
        from tfx_mtl.models.loop import TrainingLoop
        from tfx_mtl.models.trainer_config import TrainerConfig

        self.name, self.settings = name, settings
        self.spec, self.splits = data or _arrays(rho, seed, settings)
        stats = synthetic_input.label_stats(self.splits["train"], self.spec)
        tf.keras.utils.set_random_seed(seed)
        self.network = build(name, self.spec, settings)
        config = TrainerConfig.from_dict({
            "batch_size": settings.batch_size, "learning_rate": settings.learning_rate,
            "seed": seed, "log_every": 2 ** 62, "checkpoint_every": 0,
            "eval_every": settings.eval_every if selecting else 0,
            "early_stopping_patience": settings.patience if selecting else 0,
            "architecture": {"name": "shared_bottom" if name == "shared_bottom" else "mmoe"}})
        self.loop = TrainingLoop(self.network, self.spec, stats, config,
                                 max_steps=settings.steps)
        self.train = _batches(self.splits["train"], settings.batch_size, seed).repeat().prefetch(2)
        self.evaluate = eval_metrics.Evaluator(self.network.model, self.spec, stats)
        self.layers = gate_layers(name, self.spec)
        self.gates = (tf.keras.Model(self.network.model.inputs,
                                     [self.network.model.get_layer(n).output
                                      for n in self.layers]) if self.layers else None)

    def batches(self, split: str):
        return _batches(self.splits[split], self.settings.batch_size)

    def losses(self, split: str) -> dict[str, float]:
        return {t: m["loss"] for t, m in self.evaluate(self.batches(split)).items()}

    def gate_stats(self, split: str) -> dict[str, Any]:
        """Each gate's :func:`gate_stats` on ``split``'s rows."""
        import tensorflow as tf

        from tfx_mtl import naming

        keys = [naming.feature_key(f) for f in self.spec.feature_names]
        outs = self.gates({k: tf.constant(self.splits[split][k]) for k in keys}, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {n: gate_stats(o.numpy()) for n, o in zip(self.layers, outs)}


def train_one(name: str, rho: float, seed: int, settings: TransferSettings,
              data=None) -> dict[str, Any]:
    """Trains ``name`` on seed ``seed``'s data at ``rho``; its test loss and diagnostics."""
    import numpy as np

    run_ = _Run(name, rho, seed, settings, data)
    network = run_.network
    started = time.perf_counter()
    result = run_.loop.fit(run_.train, settings.steps, lambda: run_.batches("validation"))
    scored = {split: run_.losses(split) for split in ("train", "validation", "test")}
    row = {"model": name, "rho": float(rho), "seed": seed, "steps": result.steps,
           "best_step": result.best_step, "seconds": time.perf_counter() - started,
           "parameters": int(sum(np.prod(v.shape) for v in network.model.trainable_variables))}
    for split, by_task in scored.items():
        row[f"{split}_loss"] = statistics.fmean(by_task.values())
        row[f"{split}_task_loss"] = by_task
    if run_.gates is not None:
        row["gates"] = run_.gate_stats("test")
    return row


def _batches(arrays, batch_size: int, shuffle_seed: int | None = None):
    """Whole batches cut in numpy (rows permuted once by ``shuffle_seed``; the batch order
    is reshuffled every epoch): slicing 100 feature columns row by row and re-batching
    costs more than these models' steps (docs/BENCHMARKS.md, the train bench's input)."""
    import numpy as np
    import tensorflow as tf

    rows = len(next(iter(arrays.values())))
    order = (np.random.default_rng(shuffle_seed).permutation(rows) if shuffle_seed is not None
             else np.arange(rows))
    count = rows // batch_size
    cut = {k: v[order[:count * batch_size]].reshape(count, batch_size, *v.shape[1:])
           for k, v in arrays.items()}
    data = tf.data.Dataset.from_tensor_slices(cut)
    if shuffle_seed is not None:
        data = data.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    return data


def curves(name: str, rho: float, seed: int, settings: TransferSettings, every: int = 100
           ) -> list[dict[str, Any]]:
    """Learning curves for the investigation (docs/MMOE.md): ``name`` trained ``steps`` steps
    with no selection; every ``every`` steps each task's train and validation loss and,
    for a MoE, its gates' statistics on the validation rows."""
    run_ = _Run(name, rho, seed, settings, selecting=False)
    points = []
    for step in range(every, settings.steps + 1, every):
        run_.loop.fit(run_.train, step)
        point = {"step": step, "train": run_.losses("train"),
                 "validation": run_.losses("validation")}
        if run_.gates is not None:
            point["gates"] = run_.gate_stats("validation")
        points.append(point)
    return points


@dataclasses.dataclass
class Report:
    settings: TransferSettings
    runs: list[dict[str, Any]]
    machine: dict[str, Any]
    seconds: float = 0.0


def run(settings: TransferSettings, progress: Callable[[str], None] = lambda _: None) -> Report:
    from tfx_mtl.bench import train_bench

    started = time.perf_counter()
    runs = []
    for rho in settings.rhos:
        for seed in range(settings.seeds):
            data = _arrays(rho, seed, settings)
            for name in settings.models:
                row = train_one(name, rho, seed, settings, data)
                progress(f"rho {rho:g} seed {seed} {name}: test loss {row['test_loss']:.4f} "
                         f"(train {row['train_loss']:.4f}, best step {row['best_step']}, "
                         f"{row['seconds']:.0f} s)")
                runs.append(row)
    return Report(settings, runs, train_bench.machine(), time.perf_counter() - started)


# -- the results --------------------------------------------------------------

def summary(report: Report) -> list[dict[str, Any]]:
    """Per (rho, model): test loss mean +/- interval over seeds, and the paired difference
    to shared-bottom (negative: better than shared-bottom), also mean +/- interval."""
    by = {(r["rho"], r["model"], r["seed"]): r for r in report.runs}
    rows = []
    for rho in report.settings.rhos:
        for name in report.settings.models:
            seeds = [s for (p, m, s) in by if p == float(rho) and m == name]
            losses = [by[(float(rho), name, s)]["test_loss"] for s in seeds]
            mean, half = interval(losses)
            row = {"rho": float(rho), "model": name, "test_loss": mean, "interval": half,
                   "train_loss": statistics.fmean(by[(float(rho), name, s)]["train_loss"]
                                                  for s in seeds), "seeds": len(seeds)}
            if name != "shared_bottom" and "shared_bottom" in report.settings.models:
                diffs = [by[(float(rho), name, s)]["test_loss"]
                         - by[(float(rho), "shared_bottom", s)]["test_loss"] for s in seeds]
                row["vs_shared_bottom"], row["vs_interval"] = interval(diffs)
            rows.append(row)
    return rows


def markdown(report: Report) -> str:
    lines = ["| rho | model | test loss (mean +/- 95% CI) | minus shared-bottom (paired) "
             "| train loss |", "|---|---|---|---|---|"]
    for row in summary(report):
        diff = (f"{row['vs_shared_bottom']:+.4f} +/- {row['vs_interval']:.4f}"
                if "vs_shared_bottom" in row else "-")
        lines.append(f"| {row['rho']:g} | {row['model']} | {row['test_loss']:.4f} +/- "
                     f"{row['interval']:.4f} | {diff} | {row['train_loss']:.4f} |")
    return "\n".join(lines)


def command_line(settings: TransferSettings) -> str:
    s = settings
    args = ["--rhos", *(f"{r:g}" for r in s.rhos), "--seeds", str(s.seeds),
            "--models", *s.models, "--train-rows", str(s.train_rows),
            "--validation-rows", str(s.validation_rows), "--test-rows", str(s.test_rows),
            "--steps", str(s.steps), "--batch-size", str(s.batch_size),
            "--learning-rate", repr(s.learning_rate), "--eval-every", str(s.eval_every),
            "--patience", str(s.patience), "--experts", str(s.experts),
            "--expert-units", str(s.expert_units), "--tower-units", str(s.tower_units)]
    return "tfx-mtl bench transfer " + shlex.join(args)


def to_json(report: Report) -> dict[str, Any]:
    s = report.settings
    return {"summary": summary(report), "runs": report.runs,
            "settings": dataclasses.asdict(s),
            "parameters": parameter_counts(FEATURES, TASKS, s.experts, s.expert_units,
                                           s.tower_units, s.shared_bottom_units),
            "shared_bottom_units": s.shared_bottom_units, "machine": report.machine,
            "command": command_line(s), "seconds": report.seconds}


def plot(report: Report, path: str) -> None:
    """Test loss vs rho, one line per model, mean with its 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary(report)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for offset, name in enumerate(report.settings.models):
        mine = [r for r in rows if r["model"] == name]
        shift = (offset - (len(report.settings.models) - 1) / 2) * 0.01  # error bars apart
        ax.errorbar([r["rho"] + shift for r in mine], [r["test_loss"] for r in mine],
                    yerr=[r["interval"] for r in mine], marker="o", capsize=3, label=name)
    ax.set_xlabel("task correlation rho")
    ax.set_ylabel("test loss (mse, standardised labels)")
    ax.set_title(f"synthetic tasks, {report.settings.seeds} seeds, mean +/- 95% CI")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
