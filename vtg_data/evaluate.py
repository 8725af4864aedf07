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
from vtg_data.grounding.protocols import PROTOCOLS, ProtocolError, get_protocol, score_answer
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
    protocol: str = "vtg-data"  # vtg-data | tvg_r1 | time_r1 | timelens: a paper's whole scoring convention

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}")
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
        "protocol": protocol_card(cfg.protocol, cfg.parse_mode, cfg.hit_rule),
        "parse_mode": cfg.parse_mode if cfg.protocol == "vtg-data" else cfg.protocol,
        "hit_rule": (cfg.hit_rule if cfg.protocol == "vtg-data" else cfg.protocol) if fmt == "vtg" else ">=",
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


def protocol_card(name: str, parse_mode: str, hit_rule: str) -> dict:
    """What the eval card says of the scoring convention: the protocol, where it comes from, and
    for the project's own the parser and hit rule in force."""
    card = get_protocol(name).card()
    if name == "vtg-data":
        card |= {"parse_mode": parse_mode, "hit_rule": hit_rule}
    return card


def score_text(protocol: str, text: str, row: dict, uid: str, parse_mode: str = "tolerant") -> SampleScore:
    """One answer scored as ``protocol`` scores it (the project's own: ``parse_mode`` and best match)."""
    if protocol == "vtg-data":
        parsed = parse_answer(text, row["duration"] if parse_mode == "tolerant" else None, parse_mode)
        value, overlap = best_match(parsed.windows[0], row["windows"]) if parsed.windows else (0.0, 0.0)
        return SampleScore(uid, row["source"], value, overlap, parsed.status)
    try:
        value, reading = score_answer(get_protocol(protocol), text, row)
    except ProtocolError as exc:
        raise EvalInputError(f"{uid}: {exc}; the paper's evaluator stops here too") from exc
    overlap = (
        best_match(reading.window, row["windows"])[1] if reading.window and len(reading.window) >= 2 else 0.0
    )
    return SampleScore(uid, row["source"], value, overlap, reading.status)


def hit_rule_of(protocol: str, hit_rule: str):
    """The hit test of a protocol: the project's ``>=`` / ``>`` or the paper's own."""
    return hit_rule if protocol == "vtg-data" else get_protocol(protocol).hit


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
        if "text" in record:
            scores.append(score_text(cfg.protocol, record["text"], row, uid, cfg.parse_mode))
            continue
        windows, status = _prediction_windows(record, row["duration"], cfg, uid)
        value, overlap = best_match(windows[0], row["windows"]) if windows else (0.0, 0.0)
        scores.append(SampleScore(uid, row["source"], value, overlap, status))
    if not scores:
        raise EvalInputError("no prediction matches a ground-truth uid")
    rule = hit_rule_of(cfg.protocol, cfg.hit_rule)
    report = grounding_report(scores, cfg.thresholds, rule, cfg.bootstrap, cfg.seed)
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
