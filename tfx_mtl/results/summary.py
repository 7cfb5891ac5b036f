"""The run summary, read back from MLMD and TFMA after a run.

Everything comes from the pipeline's own records, not from the process that
ran it: the latest pipeline run's executions (COMPLETE or CACHED, with wall
times), the blessing gate's transfer report (per task: multi-task and baseline
metrics, changes, bounds, verdict), and the Pusher's destination. The JSON
shape is a contract (docs/pipeline.md): ``{"tasks": {"<task>": {"type", "metrics",
"baseline_metrics", "blessed", ...}}, "policy", "decision", "pushed",
"output_dir", "labels", "warnings", "gates", ...}`` -- later versions add fields, never rename these. It
is strict JSON: a NaN or infinite metric is ``null``, its reason in the task's
``not_finite``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, TextIO

from tfx_mtl import finite, naming
from tfx_mtl.results import metadata
from tfx_mtl.task_spec import TaskSpec


def collect(output_dir: str, pipeline_name: str) -> dict[str, Any]:
    """The run summary: the gate's transfer report, component runs and the push."""
    run = metadata.find_run(output_dir, pipeline_name=pipeline_name)
    transfer = run.require_report()
    reports = _training_reports(run)
    return {
        # A report written before reports were strict JSON may hold NaN: made strict here.
        "tasks": {name: {**info, **finite.sections({k: info.get(k, {}) for k in _SECTIONS})}
                  for name, info in transfer["tasks"].items()},
        "policy": transfer["policy"],
        "decision": transfer["decision"],
        "blocking": transfer["blocking"],
        "model_blessed": transfer["blessed"],
        "pushed": run.pushed,
        "output_dir": output_dir,
        "pipeline": pipeline_name,
        "run_id": run.run_id,
        "transfer_report": metadata.report_path(run.output(naming.BLESSING_GATE, "report")),
        "components": [dataclasses.asdict(c) for c in run.components],
        "labels": _label_report(run),
        "selection": _selection(reports),
        # MMoE/PLE Trainers: the last gate measurement (gate_diagnostics), by node.
        "gates": {node: r["gates"] for node, r in reports.items() if r.get("gates")},
        # How the verdicts were reached (absent in reports written before issue 15).
        **{key: transfer.get(key) for key in _VERDICT_FIELDS},
    }


# The transfer report's account of its verdicts: the split they were judged on, how a
# change bound reads the interval, the interval's level, the seeds, and Δm.
_VERDICT_FIELDS = ("split", "reading", "confidence", "seeds", "delta_m")


def _label_report(run: metadata.Run) -> dict[str, Any] | None:
    """SchemaGate's count of each task's label values (NaN, inf), if it recorded one."""
    uri = run.outputs.get(naming.SCHEMA_GATE, {}).get("label_report")
    if uri is None:
        return None
    with open(os.path.join(metadata.rebase(uri, run.pipeline_root),
                           naming.LABEL_REPORT_FILE)) as f:
        return json.load(f)


def _training_reports(run: metadata.Run) -> dict[str, dict[str, Any]]:
    """Per Trainer node, its ``training_report.json``."""
    result = {}
    for node, keys in run.outputs.items():
        uri = keys.get("model_run")
        path = uri and os.path.join(metadata.rebase(uri, run.pipeline_root),
                                    naming.TRAINING_REPORT_FILE)
        if not path or not os.path.exists(path):
            continue
        with open(path) as f:
            result[node] = json.load(f)
    return result


def _selection(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per Trainer node: the step training ended at and the step whose weights it kept
    (selected on the validation split), from its training report."""
    result = {}
    for node, report in reports.items():
        selection = report.get("selection") or {}
        result[node] = {"steps": report.get("steps"), "best_step": report.get("best_step"),
                        "stopped_early": report.get("stopped_early"),
                        "best_value": selection.get("best_value"),
                        "budget": report.get("budget")}
    return result


def gate_warnings(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The multi-task Trainers' ``unused_expert`` and ``collapsed_gate`` warnings (MMoE,
    PLE; :mod:`tfx_mtl.models.gate_diagnostics`), from the last gate measurement in their
    training reports, each naming the Trainer node. A single-task baseline's gates are in
    ``gates`` but not warned about: one task may well need one expert."""
    warnings = []
    for node, gates in (summary.get("gates") or {}).items():
        if naming.baseline_task(node) is not None:
            continue
        for warning in gates.get("warnings", []):
            warnings.append({**warning, "node": node, "split": "train",
                             "message": f"{node}: {warning['message']} (step "
                                        f"{gates['step']}, {gates['rows']} train rows)"})
    return warnings


def selection_lines(selection: dict[str, Any] | None) -> list[str]:
    """One line per Trainer: the step selected on validation and where training ended."""
    lines = []
    for node, info in (selection or {}).items():
        if info.get("best_step") is None:
            lines.append(f"selection: {node} trained {info['steps']} steps, no in-loop "
                         "evaluation: its last weights")
            continue
        ended = "stopped early" if info.get("stopped_early") else "ran its whole budget"
        lines.append(f"selection: {node} kept step {info['best_step']} (best normalised "
                     f"validation loss {info['best_value']:.4f}); {ended} at step "
                     f"{info['steps']}")
    return lines


def label_lines(labels: dict[str, Any] | None) -> list[str]:
    """The label counts as printed: a line per task with NaN or infinite label values."""
    if not labels:
        return []
    examples = sum(labels["examples"].values())
    limit = labels["max_non_finite_labels"]
    lines = []
    for name, info in labels["tasks"].items():
        if not info["non_finite"]:
            continue
        columns = "; ".join(f"{c} {v['nan']} NaN, {v['inf']} inf, {v['-inf']} -inf"
                            for c, v in info["columns"].items()
                            if v["nan"] + v["inf"] + v["-inf"])
        lines.append(f"labels: task {name!r}: {info['non_finite']} NaN or infinite label "
                     f"values in {examples} examples ({info['fraction']:.2%}; {columns}), "
                     f"masked as missing (refused above {limit:.2%})")
    return lines or [f"labels: no NaN or infinite label value in {examples} examples"]


def interval_warnings(summary: dict[str, Any], spec: TaskSpec) -> list[dict[str, Any]]:
    """A warning per bounded metric whose paired interval is too wide for its change bound.

    An interval of half-width h around a change of 0 reaches -h; around a change of the
    bound's size b it reaches b - h. When h > b one interval holds both 0 and the bound:
    the split cannot tell a change of the bound's size from noise, so the verdict says
    little (more test data, more seeds, or a looser bound would)."""
    warnings = []
    for name, info in summary["tasks"].items():
        labelled = info.get("metrics", {}).get("labelled_count")
        for metric in spec.task(name).metrics:
            bound = metric.max_regression
            entry = (info.get("intervals") or {}).get(metric.name) or {}
            low, high = ((entry.get("relative_low"), entry.get("relative_high")) if bound
                         and bound.relative else (entry.get("change_low"), entry.get("change_high")))
            if bound is None or low is None or high is None or (high - low) / 2 <= bound.amount:
                continue
            scale = 100 if bound.relative else 1
            unit = "%" if bound.relative else ""
            count = f" ({labelled:,.0f} labelled)" if labelled is not None else ""
            warnings.append({
                "kind": "wide_interval", "task": name, "split": summary.get("split") or "test",
                "metric": metric.name,
                "message": f"task {name!r}: the {summary.get('split') or 'test'} split"
                           f"{count} gives {metric.name}'s change an interval of +/- "
                           f"{(high - low) / 2 * scale:.3g}{unit}, wider than its bound "
                           f"({bound.amount * scale:g}{unit}): it cannot tell a change of the "
                           "bound's size from noise"})
    return warnings


def warning_lines(warnings: list[dict[str, Any]] | None) -> list[str]:
    """The run's small-data warnings (before the run and from the intervals), as printed."""
    return [f"warning: {w['message']}" for w in warnings or []]


_SECTIONS = ("metrics", "baseline_metrics", "changes", "not_finite")


def render(summary: dict[str, Any], spec: TaskSpec, out: TextIO) -> None:
    """The transfer report as printed at the end of ``tfx-mtl run``: one row per metric."""
    confidence = summary.get("confidence") or 0.95
    header = ["task", "role", "labelled", "metric", "multi-task", "baseline", "change",
              f"{confidence:.0%} interval", "bound", "blessed"]
    rows = []
    for name, info in summary["tasks"].items():
        task = spec.task(name)
        b, changes = info["baseline_metrics"], info["changes"]
        shown = functools.partial(_shown, info)
        for i, metric in enumerate(task.metrics):
            first = i == 0
            change = changes.get(metric.key)
            rel = ""
            if change is not None and b.get(metric.key):
                rel = f" ({change / b[metric.key] * 100:+.1f}%)"
            rows.append([
                name if first else "", info["role"] if first else "",
                shown("metrics", "labelled_count", 0) if first else "", metric.key,
                shown("metrics", metric.key), shown("baseline_metrics", metric.key),
                (shown("changes", metric.key) if change is None else f"{change:+.4f}") + rel,
                _interval(info.get("intervals", {}).get(metric.key)),
                "; ".join(info["bounds"].get(metric.key, [])).replace(" vs the baseline", "")
                or "-",
                ("yes" if info["blessed"] else "NO") if first else ""])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()
    out.write("\n" + line + "\n" + "-" * len(line) + "\n")
    for row in rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    out.write("\n")
    for line in label_lines(summary.get("labels")) + selection_lines(summary.get("selection")):
        out.write(f"  {line}\n")
    for line in verdict_lines(summary):
        out.write(f"{line}\n")
    for line in warning_lines(summary.get("warnings")):
        out.write(f"{line}\n")
    for name, info in summary["tasks"].items():
        for section, reasons in info.get("not_finite", {}).items():
            for metric, why in reasons.items():
                out.write(f"  task {name!r}: {_WHOSE[section]} {metric} is {why}\n")
        for failure in info["failures"]:
            extra = "" if info["must_bless"] else " (auxiliary: does not block the push)"
            out.write(f"  task {name!r} not blessed{extra}: {failure}\n")
    out.write(f"gate: {summary['decision']}\n")
    if summary["pushed"]:
        out.write(f"model pushed to {summary['pushed']}\n")
    else:
        out.write("model NOT pushed: the blessing gate refused it\n")


def _interval(entry: dict[str, Any] | None) -> str:
    """The change's interval, relative to the baseline where it has one: ``[-1.4%, +4.6%]``."""
    if not entry:
        return "-"
    low, high = entry.get("relative_low"), entry.get("relative_high")
    if low is not None and high is not None:
        return f"[{low * 100:+.1f}%, {high * 100:+.1f}%]"
    low, high = entry.get("change_low"), entry.get("change_high")
    if low is not None and high is not None:
        return f"[{low:+.4f}, {high:+.4f}]"
    return "not a number"


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """How the verdicts were reached, Δm with its interval, and each seed's values."""
    if summary.get("reading") is None:
        return []  # a report written before issue 15
    confidence = summary.get("confidence") or 0.95
    seeds = summary.get("seeds") or []
    lines = [f"judged on the {summary.get('split') or 'test'} split, the multi-task model and "
             f"each baseline trained with {len(seeds) or 1} seed(s); a change bound reads the "
             f"paired {confidence:.0%} interval as {summary['reading']!r} ("
             + ("refused only when the whole interval is beyond the bound)"
                if summary["reading"] == "significant"
                else "refused when the point estimate is beyond the bound)")]
    delta_m = summary.get("delta_m")
    if delta_m:
        value, low, high = (delta_m.get(k) for k in ("value", "low", "high"))
        over = ", ".join(f"{t} {m}" for t, m in delta_m.get("metrics", {}).items())
        if value is None:
            lines.append(f"Δm is not a number (a task's metric is not finite); over {over}")
        else:
            interval = (f" [{low:+.2f}%, {high:+.2f}%]" if low is not None and high is not None
                        else "")
            lines.append(f"Δm = {value:+.2f}%{interval}: the mean relative change over {over}, "
                         "positive = better than the single-task baselines")
    if len(seeds) > 1:
        for name, info in summary["tasks"].items():
            for row in info.get("seeds", []):
                values = ", ".join(
                    f"{m} {_fmt(v)} vs {_fmt(row['baseline_metrics'].get(m))}"
                    for m, v in row["metrics"].items())
                lines.append(f"  seed {row['seed']}: task {name!r}: {values}")
    return lines


_WHOSE = {"metrics": "the multi-task model's", "baseline_metrics": "the baseline's",
          "changes": "the change in"}


def _shown(info: dict[str, Any], section: str, metric: str, digits: int = 4) -> str:
    """A value of the table; ``NaN`` or ``+Infinity`` where the report has null and why."""
    why = info.get("not_finite", {}).get(section, {}).get(metric)
    return why[why.index("(") + 1:-1] if why else _fmt(info[section].get(metric), digits)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def write_json(summary: dict[str, Any], path: str) -> None:
    text = finite.dumps(summary, indent=2, sort_keys=False)
    with open(path, "w") as f:
        f.write(text + "\n")

