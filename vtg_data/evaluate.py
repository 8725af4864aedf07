"""``vtg-data eval``: score predictions against ground truth, with every convention recorded.

Two formats:

- ``vtg``: a JSONL of ``{"uid": ..., "text": ...}`` (model output, parsed here) or
  ``{"uid": ..., "windows": [[s, e], ...]}`` against normalized Parquet tables. The first window
  is the top-1. A prediction that does not parse scores 0 and is counted by reason.
- ``qvhighlights``: moment_detr-style ``{"qid", "pred_relevant_windows": [[s, e, score], ...]}``
  against a QVHighlights JSONL (or normalized QVHighlights rows), scored like the official
  evaluator (R1 and mAP with the short/middle/long breakdown).

A ground-truth query without a prediction is an error unless ``allow_missing``: metrics over a
silently smaller set are how numbers stop being comparable. ``metrics.json`` holds percentages,
the eval card (parser mode, hit rule, thresholds, inputs' hashes) and the counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from vtg_data import __version__
from vtg_data.corpora.base import sha256_file
from vtg_data.files import write_json
from vtg_data.grounding.metrics import (
    HIT_RULES,
    THRESHOLDS,
    SampleScore,
    best_match,
    grounding_report,
    qvhighlights_brief,
    qvhighlights_moment_retrieval,
)
from vtg_data.grounding.parse import MODES, parse_answer
from vtg_data.stats import query_tables

FORMATS = ("auto", "vtg", "qvhighlights")


class EvalInputError(ValueError):
    """Predictions or ground truth that cannot be scored; the message names the file and line."""


@dataclass(frozen=True)
class EvalConfig:
    predictions: Path
    gt: Path
    format: str = "auto"
    parse_mode: str = "tolerant"
    hit_rule: str = ">="
    thresholds: tuple[float, ...] = THRESHOLDS
    bootstrap: int = 1000
    seed: int = 0
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        if self.parse_mode not in MODES:
            raise ValueError(f"parse mode must be one of {MODES}")
        if self.hit_rule not in HIT_RULES:
            raise ValueError(f"hit rule must be one of {HIT_RULES}")


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    card: dict[str, Any]
    counts: dict[str, int]
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "card": self.card, "counts": self.counts, "detail": self.detail}


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalInputError(f"{path}: file not found")
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{path}: line {lineno}: malformed JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise EvalInputError(f"{path}: line {lineno}: expected an object")
        records.append(record | {"_line": lineno})
    if not records:
        raise EvalInputError(f"{path}: no predictions in the file")
    return records


def detect_format(records: list[dict]) -> str:
    first = records[0]
    if "pred_relevant_windows" in first:
        return "qvhighlights"
    if "uid" in first:
        return "vtg"
    raise EvalInputError(
        "cannot tell the predictions' format: expected 'uid' or 'pred_relevant_windows' fields"
    )


def evaluate(cfg: EvalConfig) -> EvalResult:
    records = read_jsonl(cfg.predictions)
    fmt = detect_format(records) if cfg.format == "auto" else cfg.format
    card = {
        "toolkit_version": __version__,
        "format": fmt,
        "predictions": {"file": str(cfg.predictions), "sha256": sha256_file(cfg.predictions)},
        "gt": str(cfg.gt),
        "parse_mode": cfg.parse_mode,
        "hit_rule": cfg.hit_rule if fmt == "vtg" else ">=",
        "thresholds": list(cfg.thresholds),
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed},
    }
    if fmt == "qvhighlights":
        return _evaluate_qvhighlights(records, cfg, card)
    return _evaluate_vtg(records, cfg, card)


# ---------------------------------------------------------------------------------------------


def load_ground_truth(path: Path) -> pl.DataFrame:
    tables = query_tables(path)
    frame = pl.concat(
        [pl.read_parquet(p, columns=["uid", "source", "duration", "windows", "has_gt"]) for p in tables]
    )
    return frame.filter(pl.col("has_gt"))


def _evaluate_vtg(records: list[dict], cfg: EvalConfig, card: dict) -> EvalResult:
    gt = load_ground_truth(cfg.gt)
    by_uid = {row["uid"]: row for row in gt.iter_rows(named=True)}
    predictions: dict[str, dict] = {}
    for record in records:
        uid = record.get("uid")
        if not isinstance(uid, str):
            raise EvalInputError(f"{cfg.predictions}: line {record['_line']}: missing 'uid'")
        if "text" not in record and "windows" not in record:
            raise EvalInputError(f"{cfg.predictions}: line {record['_line']}: needs 'text' or 'windows'")
        if uid in predictions:
            raise EvalInputError(f"{cfg.predictions}: line {record['_line']}: second prediction for {uid}")
        predictions[uid] = record
    missing = [uid for uid in by_uid if uid not in predictions]
    extra = [uid for uid in predictions if uid not in by_uid]
    if missing and not cfg.allow_missing:
        raise EvalInputError(
            f"{len(missing)} of {len(by_uid)} ground-truth queries have no prediction (e.g. {missing[0]}); "
            "pass --allow-missing to score only those present"
        )
    scores = []
    for uid, row in by_uid.items():
        record = predictions.get(uid)
        if record is None:
            continue
        windows, status = _prediction_windows(record, row["duration"], cfg, uid)
        if windows:
            value, overlap = best_match(windows[0], row["windows"])
        else:
            value, overlap = 0.0, 0.0
        scores.append(SampleScore(uid, row["source"], value, overlap, status))
    if not scores:
        raise EvalInputError("no prediction matches a ground-truth uid")
    report = grounding_report(scores, cfg.thresholds, cfg.hit_rule, cfg.bootstrap, cfg.seed)
    counts = {"gt": len(by_uid), "predictions": len(predictions), "scored": len(scores), "missing": len(missing),
              "extra": len(extra), "parse_failures": sum(report["parse_failures"].values())}  # fmt: skip
    metrics = {k: round(v, 2) for k, v in report["overall"].items() if k not in ("n", "parse_failures")}
    return EvalResult(metrics, card, counts, {k: report[k] for k in ("ci95", "by_source", "parse_failures")})


def _prediction_windows(record: dict, duration: float, cfg: EvalConfig, uid: str):
    if "text" in record:
        parsed = parse_answer(
            record["text"], duration if cfg.parse_mode == "tolerant" else None, cfg.parse_mode
        )
        return parsed.windows, parsed.status
    windows = record["windows"]
    try:
        cleaned = [(float(w[0]), float(w[1])) for w in windows]
    except (TypeError, ValueError, IndexError) as exc:
        raise EvalInputError(
            f"{cfg.predictions}: line {record['_line']}: 'windows' of {uid} are not [s, e] pairs"
        ) from exc
    return [tuple(sorted(w)) for w in cleaned], ("ok" if cleaned else "no_window")


def _evaluate_qvhighlights(records: list[dict], cfg: EvalConfig, card: dict) -> EvalResult:
    if cfg.gt.suffix == ".jsonl":
        gt = {}
        for record in read_jsonl(cfg.gt):
            if "relevant_windows" not in record:
                raise EvalInputError(
                    f"{cfg.gt}: line {record['_line']}: no 'relevant_windows' (release test file?)"
                )
            gt[int(record["qid"])] = [tuple(map(float, w)) for w in record["relevant_windows"]]
    else:
        frame = load_ground_truth(cfg.gt).filter(pl.col("source") == "qvhighlights")
        gt = {
            int(uid.rsplit("/", 1)[1]): [tuple(w) for w in windows]
            for uid, windows in zip(frame["uid"], frame["windows"], strict=True)
        }
    predictions = {}
    for record in records:
        try:
            qid = int(record["qid"])
            predictions[qid] = [
                (float(w[0]), float(w[1]), float(w[2])) for w in record["pred_relevant_windows"]
            ]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EvalInputError(
                f"{cfg.predictions}: line {record['_line']}: expected qid and [[s, e, score], ...]"
            ) from exc
        if not predictions[qid]:
            raise EvalInputError(
                f"{cfg.predictions}: line {record['_line']}: no predicted window for qid {qid}"
            )
    missing = [q for q in gt if q not in predictions]
    if missing and not cfg.allow_missing:
        raise EvalInputError(
            f"{len(missing)} of {len(gt)} ground-truth queries have no prediction (e.g. qid {missing[0]}); "
            "pass --allow-missing to score only those present"
        )
    predictions = {q: w for q, w in predictions.items() if q in gt}
    detail = qvhighlights_moment_retrieval(predictions, {q: gt[q] for q in predictions})
    brief = qvhighlights_brief(detail)
    metrics = {
        "R1@0.5": brief["MR-full-R1@0.5"],
        "R1@0.7": brief["MR-full-R1@0.7"],
        "mAP": brief["MR-full-mAP"],
        "mAP@0.5": brief["MR-full-mAP@0.5"],
        "mAP@0.75": brief["MR-full-mAP@0.75"],
        "mAP_short": brief["MR-short-mAP"],
        "mAP_middle": brief["MR-middle-mAP"],
        "mAP_long": brief["MR-long-mAP"],
    }
    counts = {"gt": len(gt), "predictions": len(records), "scored": len(predictions), "missing": len(missing)}
    return EvalResult(metrics, card, counts, {"official": detail})


def markdown_table(result: EvalResult) -> str:
    keys = list(result.metrics)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines.append(
        "| "
        + " | ".join(f"{result.metrics[k]:.2f}" if result.metrics[k] is not None else "-" for k in keys)
        + " |"
    )
    by_source = result.detail.get("by_source") or {}
    if len(by_source) > 1:
        lines += ["", "| source | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
        for source, values in by_source.items():
            cells = " | ".join(f"{values.get(k, float('nan')):.2f}" for k in keys)
            lines.append(f"| {source} | {values['n']} | {cells} |")
    return "\n".join(lines)


def write_metrics(result: EvalResult, out: Path) -> None:
    write_json(out, result.as_dict(), default=str)
