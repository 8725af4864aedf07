"""``vtg-data report``: one self-contained HTML page for a set of runs (images embedded, no
server, no network): what ran, the cold-start funnel with example rejects, difficulty histograms
before and after selection, metrics per source with the bootstrap intervals, training curves, and
inspector pictures of each run's best, median and worst samples."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, select_autoescape

from vtg_data import __version__
from vtg_data.files import write_text
from vtg_data.report.inspect import draw
from vtg_data.report.runs import Run, open_run, ranked, samples

SECTIONS = [("runs", "What ran"), ("funnel", "Cold-start funnel"), ("difficulty", "Difficulty"),
            ("metrics", "Metrics"), ("ablation", "Ablation"), ("training", "Training"), ("samples", "Samples")]  # fmt: skip
METRIC_NAMES = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
CURVES = ("loss", "reward", "kl", "entropy", "eval/mIoU")


def _figure(width: float = 7.0, height: float = 3.2, **options):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=100, **options)


def _png(plt, figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _run_row(run: Run) -> dict[str, Any]:
    manifest = run.manifest
    stage = manifest.get("stage") or manifest.get("card", {}).get("model", {}).get("model", "")
    counts = manifest.get("counts") or {}
    if run.kind == "train":
        lines = (run.path / "metrics.jsonl").read_text().splitlines()
        counts = {"steps": len(lines)}
    version = manifest.get("toolkit_version") or manifest.get("card", {}).get("toolkit_version", "")
    config = manifest.get("config") or manifest.get("card") or {}
    short = {k: v for k, v in counts.items() if not isinstance(v, (dict, list))}
    return {"path": str(run.path), "kind": run.kind, "stage": stage, "version": version,
            "counts": ", ".join(f"{k} {v}" for k, v in short.items()),
            "config": json.dumps(config, indent=2, sort_keys=True, default=str)}  # fmt: skip


def _funnel(run: Run) -> dict[str, Any]:
    overall = run.manifest["funnel"]["overall"]
    rejects = (
        pl.read_parquet(run.path / "rejects.parquet") if (run.path / "rejects.parquet").is_file() else None
    )
    steps = []
    for step in overall["steps"]:
        examples = []
        if rejects is not None and rejects.height:
            for row in rejects.filter(pl.col("rule") == step["rule"]).head(2).iter_rows(named=True):
                examples.append({"uid": row["uid"], "reason": row["reason"]})
        steps.append({**step, "examples": examples})
    plt, figure, axis = _figure(7.0, 0.35 * len(steps) + 1.2)
    axis.barh([s["rule"] for s in steps], [s["rejected"] for s in steps], color="#ef6c00")
    axis.invert_yaxis()
    axis.set_xlabel("traces rejected")
    axis.set_title(f"{overall['in']} traces in, {overall['out']} accepted", fontsize=10)
    caption = f"{overall['in']} teacher traces through {len(steps)} rules; {overall['out']} accepted."
    return {"path": str(run.path), "chart": _png(plt, figure), "caption": caption, "steps": steps}


def _policy_lines(reports: dict[str, Any]) -> list[str]:
    """One phrase per policy that reports on its draw (timelens, span-stratified, partial-annotation)."""
    lines = []
    if "timelens" in reports:
        buckets = reports["timelens"]["buckets"]
        lines.append(f"timelens: {reports['timelens']['quota_per_bucket']} per duration bucket, "
                     f"{sum(b['selected'] for b in buckets)} taken from {sum(1 for b in buckets if b['rows'])} buckets")  # fmt: skip
    if "span-stratified" in reports:
        distance = reports["span-stratified"]["tv_distance"]
        lines.append(
            f"span length x coverage distance to the target {distance['pool']:.3f} -> {distance['achieved']:.3f}"
        )
    if "partial-annotation" in reports:
        partial = reports["partial-annotation"]
        lines.append(
            f"{partial['flagged']} partially annotated samples {'dropped' if partial['action'] == 'drop' else 'flagged'}"
        )
    return lines


def _histogram_chart(run: Run) -> dict[str, Any]:
    histogram = run.manifest["mean_iou_histogram"]
    plt, figure, axis = _figure()
    if run.kind == "rl":
        before, after = histogram["before"], histogram["after"]
        edges = [i / len(before) for i in range(len(before))]
        width = 1 / len(before)
        axis.bar(edges, before, width=width, align="edge", color="#90caf9", label="scored")
        axis.bar(edges, after, width=width, align="edge", color="#1565c0", label="selected")
        axis.legend(fontsize=8)
        caption = (
            f"{run.path}: mean IoU over rollouts, scored vs selected ({sum(after)} of {sum(before)} kept)"
            + "".join(f"; {line}" for line in _policy_lines(run.manifest.get("policy_reports") or {}))
        )
    else:
        counts = histogram
        axis.bar(
            [i / len(counts) for i in range(len(counts))],
            counts,
            width=1 / len(counts),
            align="edge",
            color="#1565c0",
        )
        caption = f"{run.path}: mean IoU over rollouts of {sum(counts)} scored samples"
    axis.set_xlabel("mean IoU over rollouts")
    axis.set_ylabel("samples")
    axis.set_xlim(0, 1)
    return {"chart": _png(plt, figure), "caption": caption}


def _metrics(run: Run) -> dict[str, Any]:
    metrics = run.manifest.get("metrics", {})
    detail = run.manifest.get("detail", {})
    ci = detail.get("ci95", {})
    card = run.manifest.get("card", {})

    def cell(values: dict, name: str, interval: list | None = None) -> str:
        if name not in values:
            return "-"
        return f"{values[name]:.1f}" + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")

    rows = [{"source": "all", "n": run.manifest.get("counts", {}).get("scored", ""),
             "cells": [cell(metrics, n, ci.get(n)) for n in METRIC_NAMES]}]  # fmt: skip
    for source, values in sorted(detail.get("by_source", {}).items()):
        rows.append(
            {"source": source, "n": values.get("n", ""), "cells": [cell(values, n) for n in METRIC_NAMES]}
        )
    model = card.get("model", {})
    protocol = card.get("protocol") or {"name": "vtg-data"}
    origin = f" ({protocol['origin']})" if protocol.get("origin") and protocol["name"] != "vtg-data" else ""
    return {"path": str(run.path), "names": METRIC_NAMES, "rows": rows,
            "card": f"model {model.get('model', '?')}; prompt {card.get('prompt', {}).get('name', '?')}; protocol "
                    f"{protocol['name']}{origin}; parser {card.get('parse_mode', '?')}; hit rule "
                    f"{card.get('hit_rule', '?')}; percent, 95% bootstrap intervals"}  # fmt: skip


def _ablation(run: Run) -> dict[str, Any]:
    """Recipe arms side by side: held-out mIoU per arm and seed, and each finding's paired gain
    with its interval over videos and over seeds, drawn and tabled."""
    from vtg_data.findings import ARMS, read_runs, summary_rows

    runs = read_runs([run.path])
    arms = sorted({arm for r in runs for arm in r["held_out_mIoU"]})
    seeds = [f"seed {r['seed']} ({r['threads']} threads)" for r in runs]
    table = []
    for arm in arms:
        values = [r["held_out_mIoU"].get(arm) for r in runs]
        known = [v for v in values if v is not None]
        table.append({"arm": arm, "what": ARMS.get(arm, ""), "cells": [f"{v:.3f}" if v is not None else "" for v in values],
                      "mean": f"{sum(known) / len(known):.3f}" if known else ""})  # fmt: skip
    findings = summary_rows(runs)
    plt, figure, axis = _figure(7.0, 0.9 + 0.6 * max(1, len(findings)))
    for y, row in enumerate(findings):
        lo, hi = row["paired"]
        slo, shi = row["over_seeds"]
        if slo == slo:  # an interval over seeds (two seeds or more)
            axis.plot([slo, shi], [y, y], color="#90caf9", linewidth=8, solid_capstyle="butt")
        axis.plot([lo, hi], [y, y], color="#1565c0", linewidth=3)
        axis.plot(row["per_seed"], [y] * len(row["per_seed"]), "o", color="#424242", markersize=3)
        axis.plot([row["mean_gain"]], [y], "D", color="#c62828", markersize=6)
    axis.axvline(0.0, color="#9e9e9e", linewidth=1)
    axis.set_yticks(range(len(findings)), [f"{r['finding']} ({r['arms']})" for r in findings], fontsize=8)
    axis.set_xlabel("held-out mIoU gain (red: mean; dark bar: paired 95% over videos; light: t 95% over seeds; dots: seeds)",
                    fontsize=7)  # fmt: skip
    axis.invert_yaxis()
    rows = [{"finding": r["finding"], "arms": r["arms"], "mean": f"{r['mean_gain']:+.3f}",
             "paired": "[{:+.3f}, {:+.3f}]".format(*r["paired"]),
             "seeds": "[{:+.3f}, {:+.3f}]".format(*r["over_seeds"]) if r["seeds"] > 1 else "one seed",
             "verdict": r["verdict"], "runs": r["runs"]} for r in findings]  # fmt: skip
    return {
        "path": str(run.path),
        "seeds": seeds,
        "table": table,
        "findings": rows,
        "chart": _png(plt, figure),
    }


def _curves(run: Run) -> dict[str, Any] | None:
    records = [
        json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]
    if not records:
        return None
    names = [n for n in CURVES if any(n in r for r in records)]
    names += sorted({k for r in records for k in r if k.startswith("reward/")})
    if not names:
        return None
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    plt, figure, axes = _figure(3.6 * columns, 2.4 * rows, nrows=rows, ncols=columns, squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        points = [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float))]
        axis.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color="#1565c0",
            marker="." if len(points) < 30 else None,
        )
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.set_xlabel("step", fontsize=7)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_axis_off()
    stage = run.manifest.get("stage", "training")
    return {
        "path": str(run.path),
        "chart": _png(plt, figure),
        "caption": f"{stage}: {run.path} ({len(records)} steps)",
    }


def _strips(run: Run, scratch: Path) -> list[dict[str, Any]]:
    out = []
    for rank, sample in ranked(samples(run)).items():
        path = draw(sample, scratch / f"{len(list(scratch.iterdir()))}.png")
        score = f"{sample.score:.2f}" if sample.score is not None else "-"
        out.append({"image": base64.b64encode(path.read_bytes()).decode(),
                    "caption": f"{run.kind} {run.path}: {rank} sample {sample.uid} (score {score})"})  # fmt: skip
    return out


def report(sources: list[str | Path], out: Path, *, video_root: Path | None = None, title: str | None = None,
           generated: str | None = None) -> Path:  # fmt: skip
    """The page for ``sources`` (run folders or tables), written atomically to ``out``."""
    runs = [open_run(s, video_root) for s in sources]
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")  # model text in a font without it
        context = {
            "title": title or "vtg-data report",
            "version": __version__,
            "generated": generated,
            "sections": [{"id": i, "title": t} for i, t in SECTIONS],
            "runs": [_run_row(r) for r in runs],
            "funnels": [_funnel(r) for r in runs if r.kind == "coldstart"],
            "difficulties": [_histogram_chart(r) for r in runs if r.kind in ("difficulty", "rl")],
            "metrics": [_metrics(r) for r in runs if r.kind == "eval"],
            "ablations": [_ablation(r) for r in runs if r.kind == "ablation"],
            "curves": [c for c in (_curves(r) for r in runs if r.kind == "train") if c],
            "strips": [s for r in runs if r.kind != "ablation" for s in _strips(r, Path(scratch))],
        }
    template = resources.files("vtg_data.cards").joinpath("report.html.j2").read_text()
    page = Environment(autoescape=select_autoescape(default=True)).from_string(template).render(**context)
    return write_text(out, page)
