"""Expert and gate diagnostics of the mixture-of-experts families (MMoE, PLE).

Are the experts used? Measured on the logging step's training batch (before that
step's update, like the conflict diagnostic), by a side model that shares the
network's layers and returns only its softmax gates (:class:`Network.gates
<tfx_mtl.models.network.Gate>`), with ``training=False``: one forward pass of the
gates' sub-graph every ``log_every`` steps (for MMoE the feature layer and the gates,
not the experts), nothing on the other steps. Definitions, for a gate ``g`` over
``E_g`` experts and the batch's ``n`` rows ``g_i``:

- **mean gate** ``p_g = (1/n) sum_i g_i``: the share of the gate's mass each expert gets.
- **entropy** ``H(p_g) = -sum_e p_g[e] ln p_g[e]`` (nats; ``ln E_g`` when every expert
  is used equally): the entropy *of the mean*, which measures how many experts the task
  uses at all. Also **row_entropy** ``(1/n) sum_i H(g_i)``, the mean entropy of a
  row's gate: low row entropy with a high entropy of the mean is a gate that routes
  each row to few experts but different rows to different experts (specialisation);
  both high is a gate that mixes everything everywhere.
- **load** of an expert ``x`` at level ``l`` (MMoE: one level): its share of the mass
  of all the level's gates, ``load_x = (1/G_l) sum_{g at l that weigh x} p_g[x]``
  (``G_l`` gates at the level; the loads of a level sum to 1). MMoE: every task's gate
  weighs every expert, so ``load_x`` is the mean over tasks of ``p_k[x]``. PLE: a
  shared expert is weighed by every task's gate of its level (and by the shared gate
  of a level before the last); a task's own expert only by that task's gate (and the
  shared gate). Its **uniform load** is the load it would have were every gate
  uniform, ``(1/G_l) sum_{g that weigh x} 1/E_g`` (MMoE: ``1/E``).

Warnings, on the last measurement:

- ``unused_expert``: ``load_x < UNUSED_SHARE * uniform load`` (MMoE: ``1/(4E)``).
  Relative to the uniform load so that the threshold means the same for any number of
  experts and for PLE's experts that fewer gates can reach. A quarter: the 24 trained
  MMoE gates recorded in docs/MMOE.md (8 experts, not specialised) gave every expert
  0.37-2.4 x its uniform share, so a quarter flags none of them; under it an expert
  contributes little to any task.
- ``collapsed_gate``: a gate's mean puts more than ``COLLAPSED_SHARE`` (0.95) on one
  expert: the task (or PLE's shared path) has become a single-expert model.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfx_mtl.models.network import Gate, Network

UNUSED_SHARE = 0.25  # unused: load under this fraction of the uniform load
COLLAPSED_SHARE = 0.95  # collapsed: one expert's share of a gate's mean above this
THRESHOLDS = {"unused_share": UNUSED_SHARE, "collapsed_share": COLLAPSED_SHARE}
_SUM = tf.distribute.ReduceOp.SUM


def gate_id(gate: Gate) -> str:
    """The gate's name in keys and messages: its layer without ``_gate``
    (MMoE: the task; PLE: ``<task>_level_<l>`` or ``level_<l>_shared``)."""
    return gate.layer[:-len("_gate")] if gate.layer.endswith("_gate") else gate.layer


def entropy(p: Sequence[float]) -> float:
    """``-sum p ln p`` in nats (``0 ln 0 = 0``)."""
    p = np.asarray(p, np.float64)
    return float(-(p[p > 0] * np.log(p[p > 0])).sum())


def loads(gates: Sequence[Gate], means: Mapping[str, Sequence[float]]
          ) -> tuple[dict[str, float], dict[str, float]]:
    """(load, uniform load) of every expert, by expert name (definitions above)."""
    per_level: dict[int, int] = {}
    for gate in gates:
        per_level[gate.level] = per_level.get(gate.level, 0) + 1
    load: dict[str, float] = {}
    uniform: dict[str, float] = {}
    for gate in gates:
        share = 1.0 / per_level[gate.level]
        for expert, p in zip(gate.experts, means[gate.layer]):
            load[expert] = load.get(expert, 0.0) + float(p) * share
            uniform[expert] = uniform.get(expert, 0.0) + share / len(gate.experts)
    return load, uniform


def summarise(gates: Sequence[Gate], means: Mapping[str, Sequence[float]],
              row_entropy: Mapping[str, float], rows: int, step: int) -> dict[str, Any]:
    """The ``gates`` section of ``training_report.json`` from each gate layer's mean gate
    and mean row entropy over ``rows`` rows: per gate its mean, entropies and largest
    share, every expert's load, the thresholds and the warnings."""
    load, uniform = loads(gates, means)
    by_gate = {}
    for gate in gates:
        mean = [float(p) for p in means[gate.layer]]
        by_gate[gate_id(gate)] = {
            "task": gate.task, "level": gate.level, "mean": dict(zip(gate.experts, mean)),
            "entropy": entropy(mean), "row_entropy": float(row_entropy[gate.layer]),
            "max_entropy": math.log(len(mean)), "max_share": max(mean)}
    report = {"step": step, "rows": rows, "thresholds": dict(THRESHOLDS), "gates": by_gate,
              "load": load, "uniform_load": uniform}
    report["warnings"] = warnings(report)
    return report


def warnings(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``unused_expert`` and ``collapsed_gate`` warnings of a :func:`summarise` report."""
    unused, collapsed = (report["thresholds"][k] for k in ("unused_share", "collapsed_share"))
    tasks: dict[str, set] = {}  # the tasks whose gates weigh each expert
    for gate in report["gates"].values():
        for expert in gate["mean"]:
            tasks.setdefault(expert, set()).add(gate["task"])
    found = []
    for expert, load in report["load"].items():
        limit = unused * report["uniform_load"][expert]
        owner = [t for t in tasks[expert] if t]
        if load < limit:
            found.append({"kind": "unused_expert", "expert": expert,
                          "task": owner[0] if len(owner) == 1 else None, "load": load,
                          "message": f"expert {expert!r} is unused: its load (share of its level's gate "
                          f"mass) is {load:.3f}, under {unused:g} x its load under uniform "
                          f"gates ({limit:.3f})"})
    for name, gate in report["gates"].items():
        top = max(gate["mean"], key=gate["mean"].get)
        if gate["max_share"] > collapsed:
            whose = f"task {gate['task']!r}'s gate" if gate["task"] else "the shared gate"
            found.append({"kind": "collapsed_gate", "gate": name, "task": gate["task"],
                          "expert": top, "share": gate["max_share"], "message":
                          f"{whose} {name!r} has collapsed onto expert {top!r}: "
                          f"{gate['max_share']:.1%} of its mean mass (over {collapsed:.0%})"})
    return found


def scalars(report: Mapping[str, Any]) -> dict[str, float]:
    """TensorBoard scalars: ``gates/<gate>/<expert>``, ``gates/<gate>/entropy``,
    ``gates/<gate>/row_entropy`` and ``experts/load/<expert>``."""
    result = {}
    for name, gate in report["gates"].items():
        result.update({f"gates/{name}/{e}": p for e, p in gate["mean"].items()})
        result[f"gates/{name}/entropy"] = gate["entropy"]
        result[f"gates/{name}/row_entropy"] = gate["row_entropy"]
    result.update({f"experts/load/{e}": v for e, v in report["load"].items()})
    return result


class GateStats(tf.Module):
    """The gates' sums over one batch (all replicas), measured in the compiled step and
    read once per logging step. Not checkpointed: measured and read at the same step."""

    def __init__(self, network: Network, feature_keys: Sequence[str]):
        super().__init__(name="gate_stats")
        self.gates = tuple(network.gates)
        self.feature_keys = tuple(feature_keys)
        model = network.model
        self.model = tf.keras.Model(
            model.input, {g.layer: model.get_layer(g.layer).output for g in self.gates},
            name=f"{model.name}_gates")
        size = sum(len(g.experts) for g in self.gates) + len(self.gates) + 1
        # [sum of each gate's rows..., sum of each gate's row entropies..., rows]
        self.totals = tf.Variable(tf.zeros([size]), trainable=False, name="totals",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @classmethod
    def of(cls, network: Network, feature_keys: Sequence[str]) -> "GateStats | None":
        """The network's gate statistics; None for a family without gates."""
        return cls(network, feature_keys) if network.gates else None

    def replica_update(self, batch) -> None:
        """Under ``strategy.run``: this batch's sums over every replica's rows."""
        outputs = self.model({k: batch[k] for k in self.feature_keys}, training=False)
        values = [tf.cast(outputs[g.layer], tf.float32) for g in self.gates]
        local = tf.concat(
            [tf.reduce_sum(v, 0) for v in values]
            + [tf.stack([-tf.reduce_sum(tf.math.xlogy(v, v)) for v in values]),
               tf.cast(tf.shape(values[0])[:1], tf.float32)], 0)
        ctx = tf.distribute.get_replica_context()
        self.totals.assign(ctx.all_reduce(_SUM, local) if ctx else local)

    def read(self, step: int) -> dict[str, Any] | None:
        """The last measurement as :func:`summarise` reports it; None if none since the
        last read."""
        totals = self.totals.numpy().astype(np.float64)
        rows = totals[-1]
        if rows == 0:
            return None
        self.totals.assign(tf.zeros_like(self.totals))
        means, offset = {}, 0
        for gate in self.gates:
            means[gate.layer] = totals[offset:offset + len(gate.experts)] / rows
            offset += len(gate.experts)
        row_entropy = {g.layer: totals[offset + i] / rows for i, g in enumerate(self.gates)}
        return summarise(self.gates, means, row_entropy, int(rows), step)
