"""What a folder or table is (a normalized table, a cold-start, difficulty, RL, eval or training
run) and its samples as the inspector draws them: the query, the ground truth, and what the run
adds (the teacher's window and trace, k rollouts with their IoUs, a model's prediction).

Runs know their inputs from their manifests, so the videos are found without being told: a table
at ``<root>/normalized/<corpus>/`` has its videos under ``<root>/videos/``; ``video_root`` overrides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from vtg_data.data_root import table_video_root, video_file
from vtg_data.grounding.metrics import best_match
from vtg_data.stats import query_tables

KINDS = ("table", "coldstart", "difficulty", "rl", "eval", "train", "ablation")


@dataclass
class Sample:
    """One query and everything a run says about it."""

    uid: str
    source: str
    query: str
    duration: float
    windows: list[list[float]]
    video: Path | None = None
    windows_alt: list[list[list[float]]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    teacher_window: list[float] | None = None
    trace: str | None = None
    rollouts: list[tuple[list[float] | None, float]] = field(default_factory=list)  # (window, IoU)
    prediction: list[float] | None = None
    prediction_text: str | None = None
    score: float | None = None  # what ranks the sample in its run: IoU, mean IoU over rollouts

    @property
    def caption(self) -> str:
        return f"{self.uid} ({self.source})"


@dataclass
class Run:
    kind: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    video_root: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}: {self.path}"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def open_run(path: str | Path, video_root: Path | None = None) -> Run:
    """The run at ``path``, by what its folder holds."""
    path = Path(path)
    if path.is_file() and path.suffix == ".parquet":
        return Run("table", path, {}, video_root or table_video_root(path))
    if path.is_file() and path.suffix == ".jsonl":
        from vtg_data.findings import is_findings_file

        if is_findings_file(path):  # an ablation: benchmarks/paper_findings.py --out
            return Run("ablation", path, {"stage": "paper findings"}, None)
        raise ValueError(f"{path}: not a JSONL of recipe arms (benchmarks/paper_findings.py --out)")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder or table")
    manifest = _json(path / "manifest.json")
    stage = manifest.get("stage", "")
    if stage == "build coldstart":
        kind = "coldstart"
    elif stage == "score-difficulty":
        kind = "difficulty"
    elif stage == "build rl":
        kind = "rl"
    elif (path / "metrics.json").is_file() and (path / "predictions.jsonl").is_file():
        kind, manifest = "eval", _json(path / "metrics.json")
    elif (path / "metrics.jsonl").is_file() and (path / "config.json").is_file():
        kind, manifest = "train", _json(path / "config.json")
    elif query_tables(path):
        kind = "table"
    else:
        raise ValueError(f"{path}: not a table or a run folder this toolkit writes")
    return Run(kind, path, manifest, video_root or _video_root_of(kind, path, manifest))


def _video_root_of(kind: str, path: Path, manifest: dict) -> Path | None:
    """Where the run's videos are: its own setting, else next to the tables it read."""
    config = manifest.get("config", {}) if isinstance(manifest.get("config"), dict) else {}
    if config.get("video_root"):
        return Path(config["video_root"])
    if kind == "train":
        data = config.get("data") or {}
        return Path(data["video_root"]) if data.get("video_root") else None
    tables = (
        [Path(t["file"]) for t in (manifest.get("inputs") or {}).get("tables", [])]
        if kind == "coldstart"
        else []
    )
    if kind == "difficulty":
        tables = [Path(t["file"]) for t in manifest.get("inputs", [])]
    if kind == "eval":
        tables = [Path(t["file"]) for t in manifest.get("card", {}).get("data", [])]
    if kind == "rl":
        scores = Path(config.get("scores") or "")
        return _video_root_of("difficulty", scores, _json(scores / "manifest.json")) if scores.name else None
    if kind == "table":
        tables = query_tables(path)[:1]
    for table in tables:
        if table.parent.parent.name == "normalized":
            return table_video_root(table)
        upstream = table.parent.parent  # a run's output table (a cold-start set): that run's videos
        if (upstream / "manifest.json").is_file():
            found = open_run(upstream).video_root
            if found is not None:
                return found
    return None


def _rows(paths: list[Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in paths]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _base(row: dict, video_root: Path | None) -> Sample:
    video = video_file(video_root, row["source"], row["video_path"]) if video_root else None
    return Sample(uid=row["uid"], source=row["source"], query=row["query"], duration=float(row["duration"]),
                  windows=[list(w) for w in row.get("windows") or []], video=video,
                  windows_alt=[[list(w) for w in a] for a in row.get("windows_alt") or []],
                  flags=list(row.get("flags") or []))  # fmt: skip


def samples(run: Run) -> list[Sample]:
    """Every sample of the run that has ground truth, with what the run adds."""
    if run.kind == "train":
        return []
    if run.kind == "eval":
        return _eval_samples(run)
    folder = run.path
    if run.kind == "coldstart":
        frame = _rows(sorted((folder / "data").glob("*.parquet")))
    elif run.kind == "difficulty":
        frame = _rows(sorted((folder / "scores").glob("shard-*.parquet")))
    elif run.kind == "rl":
        frame = _rows(sorted((folder / "data").glob("*.parquet")))
    else:
        frame = _rows(query_tables(folder))
    out = []
    for row in frame.iter_rows(named=True):
        if not row.get("has_gt", True) or not row.get("windows"):
            continue
        sample = _base(row, run.video_root)
        if run.kind == "coldstart":
            sample.teacher_window = list(row["target_window"]) if row.get("target_window") else None
            sample.trace = row.get("trace")
            sample.score = row.get("iou")
        elif run.kind in ("difficulty", "rl") and row.get("status", "ok") == "ok":
            windows = row.get("rollout_windows") or []
            ious = row.get("ious") or []
            sample.rollouts = [
                (list(w) if w else None, float(i)) for w, i in zip(windows, ious, strict=False)
            ]
            sample.score = row.get("mean_iou")
        out.append(sample)
    return out


def _eval_samples(run: Run) -> list[Sample]:
    tables = [Path(t["file"]) for t in run.manifest.get("card", {}).get("data", [])]
    truth = {r["uid"]: r for r in _rows([t for t in tables if t.is_file()]).iter_rows(named=True)}
    out = []
    for line in (run.path / "predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        row = truth.get(record["uid"])
        if row is None or record.get("status") != "ok" or not row.get("windows"):
            continue
        sample = _base(row, run.video_root)
        windows = record.get("windows") or []
        sample.prediction = list(windows[0]) if windows else None
        sample.prediction_text = (record.get("texts") or [""])[0]
        sample.score = best_match(sample.prediction, sample.windows)[0] if sample.prediction else 0.0
        out.append(sample)
    return out


def ranked(items: list[Sample]) -> dict[str, Sample]:
    """The best, median and worst samples by their run's score (those without one left out)."""
    scored = sorted((s for s in items if s.score is not None), key=lambda s: (s.score, s.uid))
    if not scored:
        return {}
    return {"best": scored[-1], "median": scored[len(scored) // 2], "worst": scored[0]}
