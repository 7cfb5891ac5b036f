"""The training benchmark: the multi-task loop vs Keras ``fit``, and each method vs ``sum``.

Questions it answers, on the machine it runs on:

1. Does the custom loop (``TrainingLoop``, ``uniform`` weighting, ``sum``
   combination) train as fast as Keras ``model.fit`` on the same model and data?
   Ratio ``fit_vs_loop`` = loop examples/s / fit examples/s; target >= 0.9.
2. What does each multi-task method cost per step relative to ``sum`` +
   ``uniform``? The method rows come from the registries (:func:`methods`): every
   gradient combination with ``uniform`` (at parameter level, and at
   representation level once the trainer has ``surgery_level``), every
   weighting with ``sum``. Targets (issue 17, judged at K <= 5) by cost class:
   parameter level <= 1.5, representation level <= 1.2, loss-level <= 1.1,
   weightings that need the last shared layer's gradient norms <= 1.5.
3. How does that cost grow with the number of tasks K (default 2, 3, 5, 8)?
4. Is an MMoE step (``TrainingLoop``, sum + uniform, ``experts`` experts of the
   trunk's widths) at most a reference MMoE's step, DeepCTR's ``MMOE`` model
   re-built here layer for layer (:func:`reference_mmoe`: one stack of the expert
   outputs, per task a bias-free softmax gate, ``reduce_sum(stack * gate)``, a
   tower and a bias-free head) and trained with Keras ``fit``? Ratio
   ``mmoe_vs_reference`` = MMoE's step time / the reference's; target <= 1.
   PLE (``levels`` 1, one task expert) shares the mixture and gets a row too.

Method (why: timings on a shared 2-core machine drift, so every configuration
must see the same drift): every configuration of every K is built and warmed
up (tracing + a few steps) before anything is timed; then ``rounds`` rounds
run round-robin over all configurations (the starting configuration rotates
from round to round), each configuration training ``steps`` steps per round
under ``time.perf_counter``. A configuration's step time is the median over
rounds of its per-step time; ratios are taken of medians of the same run.

Each timed call is one ``TrainingLoop.fit`` / ``Model.fit`` call, so both pay
their per-call overhead once per ``steps`` steps. The loop is configured to
log only at the end of each call: it then measures the gradient-conflict
diagnostic once per call for the methods that do not form per-task gradients
anyway (as a training run with ``log_every = steps`` does). Both read the
same ready-made batches from memory, with tf.data autotuning off (see
:class:`_Data`), so that neither input slicing nor iterator teardown is what
gets timed. Threads can only be set before TensorFlow starts, so each thread
setting (default: one thread, and TensorFlow's default) runs in its own
process (:func:`run_thread_settings`) and the tables are merged side by side;
each run records the load average before and after it (the machine is shared).
docs/BENCHMARKS.md has the recorded numbers and their analysis.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import shlex
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

from tfx_mtl.bench.errors import BenchError

BASELINE = "sum"
FIT = "keras_fit"  # the Keras model.fit configuration
FIT_RATIO = "fit_vs_loop"  # its JSON key: loop examples/s / fit examples/s
# Architectures other than shared_bottom, trained by the loop with sum + uniform.
ARCHITECTURES = ("mmoe", "ple")
REFERENCE = "mmoe_reference"  # DeepCTR's MMOE re-built (reference_mmoe), Keras fit
REFERENCE_RATIO = "mmoe_vs_reference"  # JSON key: mmoe's step time / the reference's
OTHERS = (FIT, *ARCHITECTURES, REFERENCE)  # the rows that are not a multi-task method
# Cost classes of the method rows ("level") and the issue-17 bound on their ratio to sum.
LOSS, GRAD_NORMS, PARAMETERS, REPRESENTATION = ("loss", "grad norms", "parameters",
                                                "representation")
LEVEL_TARGETS: dict[str, tuple[str, float]] = {
    LOSS: ("<=", 1.1), GRAD_NORMS: ("<=", 1.5), PARAMETERS: ("<=", 1.5),
    REPRESENTATION: ("<=", 1.2)}
FIT_TARGET = (">=", 0.9)
TARGET_MAX_K = 5  # the bounds are stated for K <= 5; larger K is reported, not judged
REFERENCE_TARGET = ("<=", 1.0)  # on mmoe_vs_reference
REPRESENTATION_SUFFIX = "@representation"


@dataclasses.dataclass(frozen=True)
class Method:
    """One method row: ``weighting`` + ``combine``, at ``level`` (its cost class);
    ``surgery_level`` is passed to the trainer config when set."""
    name: str
    weighting: str
    combine: str
    level: str
    surgery_level: str | None = None


def methods() -> tuple[Method, ...]:
    """The method rows, from the registries: ``sum``; every gradient combination with
    ``uniform`` at each surgery level it runs at (a method forced to one level, such as
    ``mgda_ub``, once); every weighting with ``sum``."""
    from tfx_mtl.models import combination, weighting

    rows = [Method(BASELINE, "uniform", "sum", LOSS)]
    for name in combination.names():
        method = combination.REGISTRY.get(name)
        if not method.needs_task_gradients:
            continue
        if method.forced_level:
            rows.append(Method(name, "uniform", name, method.forced_level))
            continue
        for surgery_level in combination.levels(name):
            at_parameters = surgery_level == combination.PARAMETERS
            rows.append(Method(name if at_parameters else name + REPRESENTATION_SUFFIX,
                               "uniform", name,
                               PARAMETERS if at_parameters else REPRESENTATION,
                               None if at_parameters else REPRESENTATION))
    taken = {row.name for row in rows}
    for name in weighting.names():
        if name == "uniform":
            continue
        method = weighting.REGISTRY.get(name)
        rows.append(Method(name if name not in taken else f"{name}+sum", name, "sum",
                           GRAD_NORMS if method.needs_grad_norms else LOSS))
    return tuple(rows)


def names() -> tuple[str, ...]:
    """Every configuration, in table order: the method rows, then the others."""
    return tuple(m.name for m in methods()) + OTHERS


def target(name: str, k: int) -> tuple[str, float] | None:
    """The bound on ``name``'s ratio at ``k`` tasks, or None (the baseline, K > 5, ...)."""
    if k > TARGET_MAX_K or name == BASELINE:
        return None
    if name == FIT:
        return FIT_TARGET
    level = {m.name: m.level for m in methods()}.get(name)
    return LEVEL_TARGETS.get(level)


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    tasks: tuple[int, ...] = (2, 3, 5, 8)  # the K values, each benchmarked with every method
    batch_size: int = 512  # global batch
    hidden_units: tuple[int, ...] = (256, 256)  # shared_bottom trunk
    tower_units: tuple[int, ...] = (64,)  # each task's tower
    steps: int = 20  # timed steps per configuration per round
    warmup: int = 5  # untimed steps per configuration after tracing
    rounds: int = 5
    rows: int = 20_000  # synthetic rows, held in memory
    features: int = 100  # numeric features
    learning_rate: float = 1e-3
    seed: int = 0
    experts: int = 4  # of the MMoE rows (and PLE's shared experts); each of hidden_units
    threads: int = 0  # TensorFlow's intra- and inter-op threads; 0: its default
    methods: tuple[str, ...] = ()  # the configurations to time (sum always); (): all names()

    def __post_init__(self):
        for name in ("tasks", "hidden_units", "tower_units", "methods"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raises :class:`BenchError` naming the first invalid field."""
        for name in ("batch_size", "steps", "warmup", "rounds", "rows", "features", "seed",
                     "experts", "threads"):
            value = getattr(self, name)
            low = 0 if name in ("seed", "threads") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BenchError(name, f"must be an integer >= {low}, got {value!r}")
        for name in ("tasks", "hidden_units", "tower_units"):
            value = getattr(self, name)
            if (not isinstance(value, tuple) or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                               for v in value)):
                raise BenchError(name, f"must be a non-empty list of positive integers, "
                                       f"got {value!r}")
        if min(self.tasks) < 2:
            raise BenchError("tasks", f"every K must be >= 2 (with one task there is nothing "
                                      f"to weigh or combine), got {list(self.tasks)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise BenchError("tasks", f"must not repeat a K, got {list(self.tasks)}")
        if self.features < max(self.tasks):
            raise BenchError("features", f"must be at least the largest K ({max(self.tasks)}): "
                                         f"the synthetic tasks need that many input dimensions, "
                                         f"got {self.features}")
        if self.rows < self.batch_size:
            raise BenchError("rows", f"must be at least batch_size ({self.batch_size}), "
                                     f"got {self.rows}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise BenchError("learning_rate", f"must be a positive number, "
                                              f"got {self.learning_rate!r}")
        known = names()
        unknown = [name for name in self.methods if name not in known]
        if unknown:
            raise BenchError("methods", f"unknown configuration(s) {', '.join(unknown)} "
                                        f"(known: {', '.join(known)})")

    @property
    def configurations(self) -> tuple[str, ...]:
        """The configurations timed, in table order: ``methods`` (plus sum), else all."""
        known = names()
        chosen = set(self.methods) | {BASELINE} if self.methods else set(known)
        return tuple(name for name in known if name in chosen)


# -- the arithmetic (pure) ----------------------------------------------------

def per_step_ms(seconds: float, steps: int) -> float:
    """Milliseconds per step of a call that took ``seconds`` for ``steps`` steps."""
    return 1000.0 * seconds / steps


def examples_per_second(batch_size: int, ms_per_step: float) -> float:
    return 1000.0 * batch_size / ms_per_step


def ratios(medians: Mapping[str, float]) -> dict[str, float]:
    """Median step time of each configuration / that of ``sum``.

    For ``keras_fit`` this is fit's step time / the loop's, which equals the
    loop's examples/s / fit's: the ``fit_vs_loop`` throughput ratio.
    """
    if BASELINE not in medians:
        raise ValueError(f"medians: no {BASELINE!r} baseline among {sorted(medians)}")
    base = medians[BASELINE]
    return {name: ms / base for name, ms in medians.items()}


def reference_ratio(medians: Mapping[str, float]) -> float | None:
    """MMoE's median step time / the reference MMoE's; None unless both were timed."""
    if "mmoe" in medians and REFERENCE in medians:
        return medians["mmoe"] / medians[REFERENCE]
    return None


def target_met(ratio: float, target: tuple[str, float]) -> bool:
    comparison, bound = target
    if comparison == ">=":
        return ratio >= bound
    if comparison == "<=":
        return ratio <= bound
    raise ValueError(f"target: unknown comparison {comparison!r} (one of: >=, <=)")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    k: int
    ms_per_step: float  # median over rounds
    examples_per_second: float
    ratio: float  # to sum's median step time
    target: str | None  # e.g. "<= 1.5"
    met: bool | None


@dataclasses.dataclass
class Report:
    settings: BenchSettings
    rows: list[Row]
    per_round_ms: dict[int, dict[str, list[float]]]  # K -> name -> per-step ms of each round
    machine: dict[str, Any]
    input_ms: dict[int, dict[str, float]]  # K -> {"loop"|"fit": ms per batch of the input alone}
    seconds: float = 0.0  # wall time of the whole run

    def medians(self, k: int) -> dict[str, float]:
        return {row.name: row.ms_per_step for row in self.rows if row.k == k}

    def ratios(self, k: int) -> dict[str, float]:
        return {row.name: row.ratio for row in self.rows if row.k == k}

    def reference_ratio(self, k: int) -> float | None:
        return reference_ratio(self.medians(k))


def summarise(per_round_ms: Mapping[int, Mapping[str, Sequence[float]]], batch_size: int
              ) -> list[Row]:
    """Table rows from per-round per-step times: medians, throughput, ratios, targets."""
    rows = []
    for k in sorted(per_round_ms):
        medians = {name: statistics.median(times) for name, times in per_round_ms[k].items()}
        for name, ratio in ratios(medians).items():
            bound = target(name, k)
            rows.append(Row(name, k, medians[name], examples_per_second(batch_size, medians[name]),
                            ratio, f"{bound[0]} {bound[1]:g}" if bound else None,
                            target_met(ratio, bound) if bound else None))
    order = {name: i for i, name in enumerate(names())}
    return sorted(rows, key=lambda r: (order.get(r.name, len(order)), r.k))


def label(name: str) -> str:
    """What a configuration trains, for the table."""
    if name == FIT:
        return "keras model.fit"
    if name in ARCHITECTURES:
        return f"loop {name} (sum)"
    if name == REFERENCE:
        return "keras fit reference mmoe"
    method = {m.name: m for m in methods()}[name]
    return f"{method.weighting} + {method.combine}" + (
        f" @ {method.surgery_level}" if method.surgery_level else "")


def level(name: str) -> str:
    """A configuration's cost class (the method rows) or "-"."""
    return {m.name: m.level for m in methods()}.get(name, "-")


def arguments(settings: BenchSettings, threads: Sequence[int] | None = None) -> list[str]:
    """The ``tfx-mtl bench train`` options that repeat ``settings`` (with the thread
    settings ``threads``; default: ``settings.threads`` alone)."""
    s = settings
    args = ["--ks", *map(str, s.tasks), "--batch-size", str(s.batch_size),
            "--hidden-units", ",".join(map(str, s.hidden_units)),
            "--tower-units", ",".join(map(str, s.tower_units)), "--steps", str(s.steps),
            "--warmup", str(s.warmup), "--rounds", str(s.rounds), "--rows", str(s.rows),
            "--features", str(s.features), "--learning-rate", repr(s.learning_rate),
            "--seed", str(s.seed), "--experts", str(s.experts),
            "--threads", *map(str, [s.threads] if threads is None else threads)]
    if s.methods:
        args += ["--methods", *s.methods]
    return args


def command_line(settings: BenchSettings, threads: Sequence[int] | None = None) -> str:
    """The ``tfx-mtl bench train`` command that repeats this benchmark."""
    return "tfx-mtl bench train " + shlex.join(arguments(settings, threads))


def to_json(report: Report) -> dict[str, Any]:
    """One thread setting's results: ``{"threads": n, "rows": [...], "K=3": {"fit_vs_loop": r,
    "pcgrad": r, ...}, ..., "medians_ms": ..., "machine": ..., "command": ...}``."""
    result: dict[str, Any] = {"threads": report.settings.threads}
    ks = sorted(report.per_round_ms)
    result["rows"] = [{**dataclasses.asdict(row), "label": label(row.name),
                       "level": level(row.name)} for row in report.rows]
    for k in ks:
        result[f"K={k}"] = {(FIT_RATIO if n == FIT else n): r for n, r in report.ratios(k).items()}
        if report.reference_ratio(k) is not None:
            result[f"K={k}"][REFERENCE_RATIO] = report.reference_ratio(k)
    result["medians_ms"] = {f"K={k}": report.medians(k) for k in ks}
    result["per_round_ms"] = {f"K={k}": {n: list(v) for n, v in report.per_round_ms[k].items()}
                              for k in ks}
    result["met"] = {f"K={k}": {(FIT_RATIO if row.name == FIT else row.name): row.met
                                for row in report.rows if row.k == k and row.met is not None}
                     for k in ks}
    for k in ks:
        if report.reference_ratio(k) is not None:
            result["met"][f"K={k}"][REFERENCE_RATIO] = target_met(report.reference_ratio(k),
                                                                REFERENCE_TARGET)
    result["input_ms_per_batch"] = {f"K={k}": v for k, v in sorted(report.input_ms.items())}
    result["settings"] = dataclasses.asdict(report.settings)
    result["machine"] = report.machine
    result["command"] = command_line(report.settings)
    result["seconds"] = report.seconds
    return result


def threads_label(threads: int) -> str:
    return "default threads" if threads == 0 else f"{threads} thread" + "s" * (threads > 1)


def format_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs' tables side by side, one column group per thread setting: per row
    (configuration, K) its ms/step, ratio to sum and whether the target is met."""
    header = ["configuration", "level", "K", "target"]
    for run in runs:
        header += [f"ms ({threads_label(run['threads'])})", "ratio", "met?"]
    keys, cells = [], {}
    for index, run in enumerate(runs):
        for row in run["rows"]:
            key = (row["name"], row["k"])
            if key not in cells:
                keys.append(key)
                cells[key] = [row["label"], row["level"], str(row["k"]), row["target"] or "-"]
            cells.setdefault((key, index), [f"{row['ms_per_step']:.2f}", f"{row['ratio']:.2f}",
                                            "-" if row["met"] is None
                                            else ("yes" if row["met"] else "NO")])
    lines = [header] + [cells[key] + [c for index in range(len(runs))
                                      for c in cells.get((key, index), ["", "", ""])]
                        for key in keys]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append(f"ratio: median step time / that of the custom loop with sum + uniform, same "
                f"thread setting; for keras_fit it is loop examples/s / fit examples/s "
                f"({FIT_RATIO}). Targets are judged at K <= {TARGET_MAX_K}.")
    for run in runs:
        load = run["machine"].get("load")
        if load:
            text.append(f"{threads_label(run['threads'])}: load average (1 min) "
                        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after; "
                        f"{run['seconds']:.0f} s")
        for key in sorted(k for k in run if k.startswith("K=")):
            ratio = run[key].get(REFERENCE_RATIO)
            if ratio is not None:
                comparison, bound = REFERENCE_TARGET
                text.append(f"  {key}: MMoE step / reference MMoE step ({REFERENCE_RATIO}): "
                            f"{ratio:.2f} (target {comparison} {bound:g}: "
                            f"{'yes' if target_met(ratio, REFERENCE_TARGET) else 'NO'})")
    return "\n".join(text)


def load_average() -> list[float]:
    """``uptime``'s 1, 5 and 15 minute load averages (the machine is shared)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def machine(before_load: Sequence[float] = ()) -> dict[str, Any]:
    """What the numbers depend on: cores, CPU model, TensorFlow / Keras versions, the load
    average when the run started (``before_load``) and now."""
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import keras
        keras_version = keras.__version__
    except ImportError:
        keras_version = "n/a"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"nproc": affinity, "cpu": cpu, "tensorflow": tf.__version__, "keras": keras_version,
            "python": platform.python_version(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "load": {"before": before_load, "after": load_average()}}


def set_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op thread pools (0: its default); before it starts."""
    import tensorflow as tf

    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:  # TensorFlow's runtime already started in this process
        raise BenchError("threads", f"cannot be set once TensorFlow has started: {e}") from None


# -- the configurations (real training) ------------------------------------------

class _Data:
    """One K's synthetic data as whole batches: the loop's dicts and the same batches as (x, y).

    The rows are cut into batches once, in numpy, so the input pipeline only
    hands over ready batches (~0.4 ms each). Slicing 20,000 rows of ~100 columns
    one row at a time and re-batching them (``synthetic_input.dataset``) costs
    ~10 ms per batch of 512 on 2 cores, more than a ``sum`` step, and would time
    tf.data instead of the training step. Same batches, same order, every epoch.
    """

    def __init__(self, k: int, settings: BenchSettings):
        import numpy as np

        from tfx_mtl import naming, synth
        from tfx_mtl.models import synthetic_input

        config = synth.SynthConfig(rows=settings.rows, tasks=k, correlation=0.5,
                                   features=settings.features, seed=settings.seed)
        self.spec = synthetic_input.spec(config)
        arrays = synthetic_input.transformed(synth.sample(config), self.spec)
        self.label_stats = synthetic_input.label_stats(arrays, self.spec)
        batches, size = settings.rows // settings.batch_size, settings.batch_size

        def batched(array):
            return array[:batches * size].reshape(batches, size, *array.shape[1:])

        self.loop_data = self._pipeline({key: batched(v) for key, v in arrays.items()})
        # Keras scores its mse on the labels the loop scores: standardised by label_stats.
        x = {naming.feature_key(f): batched(arrays[naming.feature_key(f)])
             for f in self.spec.feature_names}
        y = {}
        for task in self.spec.tasks:
            mean, std = self.label_stats[task.name]
            y[task.name] = batched(((arrays[naming.label_key(task.name)] - mean) / std
                                    ).astype(np.float32).reshape(-1, 1))
        self.fit_data = self._pipeline((x, y))

    @staticmethod
    def _pipeline(batches):
        import tensorflow as tf

        # No tf.data autotuning: ready batches need no tuning, and destroying an iterator
        # (at the end of every timed fit call, loop's and Keras') waits for the autotune
        # thread's current sleep, whose period doubles from 10 ms: calls then end at
        # ~310, 630, 1270, ... ms after they started, whatever the steps took.
        options = tf.data.Options()
        options.autotune.enabled = False
        return (tf.data.Dataset.from_tensor_slices(batches).repeat().prefetch(2)
                .with_options(options))


def input_ms_per_batch(dataset, batches: int) -> float:
    """Milliseconds per batch the input pipeline alone takes (after a first batch)."""
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return per_step_ms(time.perf_counter() - started, batches)


def _architecture(settings: BenchSettings, name: str = "shared_bottom") -> dict[str, Any]:
    return {"name": name, "hidden_units": settings.hidden_units,
            "tower_units": settings.tower_units, "experts": settings.experts}


def _network(spec, settings: BenchSettings, name: str = "shared_bottom"):
    import tensorflow as tf

    from tfx_mtl.models import architecture, families

    tf.keras.utils.set_random_seed(settings.seed)
    config = architecture.ArchitectureConfig(**_architecture(settings, name))
    return families.build(spec, {}, None, config)


def reference_mmoe(spec, settings: BenchSettings):
    """DeepCTR's ``MMOE`` (deepctr/models/multitask/mmoe.py, 0.9.x) re-built layer for layer
    on the same inputs: experts DNN(hidden_units) each; the expert outputs stacked once
    ([batch, E, d]); per task a bias-free Dense(E, softmax) gate on the feature vector,
    ``reduce_sum(stack * gate[..., None], axis=1)``, a tower DNN(tower_units) and a
    bias-free Dense(1) head (regression: no output activation)."""
    import tensorflow as tf

    from tfx_mtl.models import features

    tf.keras.utils.set_random_seed(settings.seed)
    inputs, x = features.input_layer(spec, {})

    def dnn(h, units, prefix):
        for i, width in enumerate(units):
            h = tf.keras.layers.Dense(width, activation="relu", name=f"{prefix}_{i}")(h)
        return h

    stacked = tf.keras.layers.Lambda(lambda outs: tf.stack(outs, axis=1), name="expert_stack")(
        [dnn(x, settings.hidden_units, f"expert_{e}") for e in range(settings.experts)])
    outputs = {}
    for task in spec.tasks:
        gate = tf.keras.layers.Dense(settings.experts, use_bias=False, activation="softmax",
                                     name=f"gate_softmax_{task.name}")(x)
        mixed = tf.keras.layers.Lambda(
            lambda pair: tf.reduce_sum(pair[0] * tf.expand_dims(pair[1], -1), axis=1),
            name=f"gate_mul_expert_{task.name}")([stacked, gate])
        outputs[task.name] = tf.keras.layers.Dense(1, use_bias=False, name=task.name)(
            dnn(mixed, settings.tower_units, f"{task.name}_tower"))
    return tf.keras.Model(inputs, outputs, name=REFERENCE)


class _LoopRunner:
    """``TrainingLoop.fit`` continued by ``steps`` steps per call (its step is traced once)."""

    def __init__(self, name: str, weighting: str, combine: str, k: int, data: _Data,
                 settings: BenchSettings, architecture: str = "shared_bottom",
                 surgery_level: str | None = None):
        from tfx_mtl.models.loop import TrainingLoop
        from tfx_mtl.models.trainer_config import TrainerConfig

        self.name, self.k, self.data = name, k, data
        # log_every beyond any step: the loop logs only at the last step of each call.
        config = TrainerConfig.from_dict({
            "batch_size": settings.batch_size, "learning_rate": settings.learning_rate,
            "seed": settings.seed, "log_every": 2 ** 62, "weighting": weighting,
            "combine": combine, "checkpoint_every": 0,
            "architecture": _architecture(settings, architecture),
            **({"surgery_level": surgery_level} if surgery_level else {})})
        self.loop = TrainingLoop(_network(data.spec, settings, architecture), data.spec,
                                 data.label_stats, config)

    def run(self, steps: int) -> float:
        """Trains ``steps`` more steps; returns the seconds the call took."""
        target = int(self.loop.step_counter.numpy()) + steps
        started = time.perf_counter()
        result = self.loop.fit(self.data.loop_data, target)
        seconds = time.perf_counter() - started
        if result.steps != target:
            raise RuntimeError(f"{self.name} K={self.k}: fit ended at step {result.steps}, "
                               f"expected {target}")
        return seconds

    def traces(self) -> tuple[int, ...]:
        """How often the loop's compiled functions were traced (must not change once warm)."""
        functions = (getattr(self.loop, "_train_step", None),)
        return tuple(f.experimental_get_tracing_count() for f in functions
                     if hasattr(f, "experimental_get_tracing_count"))


class _FitRunner:
    """Keras ``model.fit`` of ``steps`` steps per call: one mse loss per output, Adam."""

    def __init__(self, k: int, data: _Data, settings: BenchSettings, name: str = FIT):
        import tensorflow as tf

        self.name, self.k, self.data = name, k, data
        self.model = (reference_mmoe(data.spec, settings) if name == REFERENCE
                      else _network(data.spec, settings).model)
        # jit_compile=False is what "auto" resolves to on a CPU-only machine; the loop's
        # step is not XLA-compiled either.
        self.model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate),
                           loss={t: "mse" for t in data.spec.task_names}, jit_compile=False)

    def run(self, steps: int) -> float:
        started = time.perf_counter()
        history = self.model.fit(self.data.fit_data, epochs=1, steps_per_epoch=steps, verbose=0,
                                 shuffle=False)
        seconds = time.perf_counter() - started
        loss = history.history["loss"][-1]
        if not math.isfinite(loss):
            raise RuntimeError(f"{self.name} K={self.k}: loss is {loss}")
        return seconds

    def traces(self) -> tuple[int, ...]:
        """Keras keeps one train function across fit calls: its identity stands in."""
        return (id(self.model.train_function),)


def build_runners(settings: BenchSettings, progress: Callable[[str], None] = lambda _: None
                  ) -> list:
    runners, chosen = [], settings.configurations
    for k in settings.tasks:
        data = _Data(k, settings)
        for method in methods():
            if method.name in chosen:
                progress(f"building K={k} {method.name}")
                runners.append(_LoopRunner(method.name, method.weighting, method.combine, k,
                                           data, settings, surgery_level=method.surgery_level))
        for name in OTHERS:
            if name not in chosen:
                continue
            progress(f"building K={k} {name}")
            runners.append(_LoopRunner(name, "uniform", "sum", k, data, settings, name)
                           if name in ARCHITECTURES else _FitRunner(k, data, settings, name))
    return runners


def interleaved(runners: Sequence, steps: int, rounds: int,
                progress: Callable[[str], None] = lambda _: None
                ) -> dict[int, dict[str, list[float]]]:
    """Per-step ms of each runner in each round; rounds go round-robin, the start rotating."""
    times: dict[int, dict[str, list[float]]] = {}
    for r in range(rounds):
        started = time.perf_counter()
        shift = r % len(runners)
        for runner in list(runners[shift:]) + list(runners[:shift]):
            ms = per_step_ms(runner.run(steps), steps)
            times.setdefault(runner.k, {}).setdefault(runner.name, []).append(ms)
        progress(f"round {r + 1}/{rounds}: {time.perf_counter() - started:.1f} s")
    return times


def run(settings: BenchSettings, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Builds and warms up every configuration, then times them in interleaved rounds."""
    import tensorflow as tf

    started, load = time.perf_counter(), load_average()
    set_threads(settings.threads)
    # Each TrainingLoop traces its own step once, but TF's retracing warning counts the
    # traces of every loop's (shared) method together and would warn falsely.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        runners = build_runners(settings, progress)
        for runner in runners:  # tracing + warmup steps, all before any timing
            progress(f"warming up K={runner.k} {runner.name}")
            # At least 2 steps: the loop traces a plain step and, for the last step of a
            # call (a logging step), one that also measures gradient conflicts.
            runner.run(max(2, settings.warmup))
    finally:
        logger.setLevel(level)
    traced = [runner.traces() for runner in runners]
    input_ms = {}
    for k in settings.tasks:  # the input pipeline alone, to show it is not what is timed
        runner = next(r for r in runners if r.k == k)
        input_ms[k] = {"loop": input_ms_per_batch(runner.data.loop_data, settings.steps),
                       "fit": input_ms_per_batch(runner.data.fit_data, settings.steps)}
    per_round = interleaved(runners, settings.steps, settings.rounds, progress)
    for runner, before in zip(runners, traced):
        if runner.traces() != before:
            raise RuntimeError(f"{runner.name} K={runner.k}: retraced during the timed rounds "
                               f"({before} -> {runner.traces()}); the timings include tracing")
    return Report(settings, summarise(per_round, settings.batch_size), per_round, machine(load),
                  input_ms, time.perf_counter() - started)


THREADS = (1, 0)  # the thread settings of a default run: one thread, and TensorFlow's default
# --quick: K = 5 only, fewer and shorter rounds (about a tenth of the default run's time).
QUICK = {"tasks": (5,), "steps": 10, "warmup": 2, "rounds": 3}


def run_thread_settings(settings: BenchSettings, threads: Sequence[int],
                        progress: Callable[[str], None] = lambda _: None
                        ) -> list[dict[str, Any]]:
    """:func:`to_json` of a run per thread setting. Threads can only be set before
    TensorFlow starts, so with more than one setting each runs in its own process
    (``tfx-mtl bench train --threads N --json FILE``), one after the other; a single
    setting runs here."""
    if len(set(threads)) != len(threads) or not threads:
        raise BenchError("threads", f"must be distinct thread counts, got {list(threads)}")
    if len(threads) == 1:
        return [to_json(run(dataclasses.replace(settings, threads=threads[0]), progress))]
    import json
    import subprocess
    import sys
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="tfx-mtl-bench-") as tmp:
        for n in threads:
            path = os.path.join(tmp, f"threads-{n}.json")
            argv = arguments(dataclasses.replace(settings, threads=n)) + ["--json", path]
            progress(f"{threads_label(n)}: tfx-mtl bench train {shlex.join(argv)}")
            subprocess.run([sys.executable, "-c", "import sys; from tfx_mtl import cli; "
                            "sys.exit(cli.main(['bench', 'train', *sys.argv[1:]]))", *argv],
                           check=True, stdout=subprocess.DEVNULL)
            with open(path) as f:
                results.extend(json.load(f)["runs"])
    return results
