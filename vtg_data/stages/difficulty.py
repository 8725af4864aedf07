"""``vtg-data score-difficulty``: k policy rollouts per sample -> IoU statistics, kept as a table.

Score first, select second: this stage only measures; ``build rl`` selects from its table without
running a model again. Per sample: the k rollout texts, their first parsed windows, IoUs and
rewards (a preset from ``grounding.rewards``), mean and std IoU, pass rates at IoU 0.3/0.5/0.7,
the parse-failure rate, optionally a greedy IoU, and ``difficulty = 1 - mean IoU``. Every row
carries the run id, a hash of the policy (model id and revision), prompt, sampling, frame policy
and decoder.

Resumable at two levels: samples are split into shards by a hash of the uid; a finished shard is
written atomically and skipped on rerun; inside a shard every model answer is appended to a call
cache as it arrives, so a kill loses at most the requests in flight and no finished rollout is
asked for again. A request that fails is recorded ``failed`` (not scored) and asked again on rerun.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data import __version__
from vtg_data.corpora.base import sha256_file
from vtg_data.grounding.metrics import iou
from vtg_data.grounding.parse import parse_answer
from vtg_data.grounding.prompts import get_prompt
from vtg_data.grounding.rewards import PRESETS, compute_reward
from vtg_data.lvlm import GenerationParams, InferenceBackend, Request, backend_notes
from vtg_data.lvlm.pricing import Spend, price_for
from vtg_data.schema import QUERY_SCHEMA, write_table_atomic
from vtg_data.stages.common import CallCache, jsonable, shard_of, write_json_atomic
from vtg_data.stages.failures import group_failures
from vtg_data.tables import load_rows
from vtg_data.video import SamplingPolicy

PASS_THRESHOLDS = (0.3, 0.5, 0.7)
ENGINES = ("local", "ray")
SCORE_SCHEMA = pa.schema(
    [
        *QUERY_SCHEMA,
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("rollouts", pa.list_(pa.string())),
        pa.field("rollout_windows", pa.list_(pa.list_(pa.float64()))),
        pa.field("parse_status", pa.list_(pa.string())),
        pa.field("ious", pa.list_(pa.float64())),
        pa.field("rewards", pa.list_(pa.float64())),
        pa.field("mean_iou", pa.float64()),
        pa.field("std_iou", pa.float64()),
        *[pa.field(f"pass@{t:g}", pa.float64()) for t in PASS_THRESHOLDS],
        pa.field("parse_failure_rate", pa.float64()),
        pa.field("greedy_iou", pa.float64()),
        pa.field("difficulty", pa.float64()),
    ],
    metadata=QUERY_SCHEMA.metadata | {b"vtg_data.table": b"difficulty"},
)


@dataclass(frozen=True)
class DifficultyConfig:
    """Options of ``vtg-data score-difficulty``; saved in the manifest."""

    data: tuple[Path, ...]
    out: Path
    k: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    greedy: bool = False
    prompt: str = "tvg_r1_think"
    reward: str = "tvg_r1"
    policy: SamplingPolicy = field(default_factory=SamplingPolicy)
    shards: int = 8
    engine: str = "local"
    workers: int = 1
    gpus_per_worker: float = 0.0
    video_root: Path | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.shards < 1 or self.workers < 1:
            raise ValueError("k, shards and workers must be >= 1")
        if self.reward not in PRESETS:
            raise ValueError(f"reward must be one of {sorted(PRESETS)}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")
        get_prompt(self.prompt)

    @property
    def rollout_params(self) -> GenerationParams:
        return GenerationParams(n=self.k, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                repetition_penalty=self.repetition_penalty, max_tokens=self.max_tokens,
                                seed=self.seed)  # fmt: skip


def run_id(cfg: DifficultyConfig, identity) -> str:
    """What makes two score tables comparable: policy, prompt, sampling, frames, decoder, reward."""
    template = get_prompt(cfg.prompt)
    payload = {
        "model": asdict(identity),
        "prompt": template.id,
        "sampling": asdict(cfg.rollout_params),
        "greedy": cfg.greedy,
        "frames": asdict(cfg.policy),
        "reward": cfg.reward,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _request(row: dict, cfg: DifficultyConfig) -> Request:
    return Request(row["uid"], get_prompt(cfg.prompt).messages(row["query"]), row["_video"], cfg.policy)


def score_row(
    row: dict, texts: list[str] | None, greedy: str | None, cfg: DifficultyConfig, rid: str, error=None
) -> dict:
    base = {name: row[name] for name in QUERY_SCHEMA.names} | {"run_id": rid, "status": "ok", "error": None}
    if texts is None:
        return base | {"status": "failed", "error": error or "failed"}
    template = get_prompt(cfg.prompt)
    windows, statuses, ious, rewards = [], [], [], []
    for text in texts:
        parsed = parse_answer(
            text, row["duration"] if template.parse_mode == "tolerant" else None, template.parse_mode
        )
        first = list(parsed.windows[0]) if parsed.ok and parsed.windows else []
        windows.append(first)
        statuses.append(parsed.status)
        ious.append(max(iou(first, gt) for gt in row["windows"]) if first else 0.0)
        rewards.append(compute_reward(text, row, cfg.reward).total)
    mean = statistics.fmean(ious)
    greedy_iou = None
    if greedy is not None:
        parsed = parse_answer(
            greedy, row["duration"] if template.parse_mode == "tolerant" else None, template.parse_mode
        )
        greedy_iou = (
            max(iou(parsed.windows[0], gt) for gt in row["windows"]) if parsed.ok and parsed.windows else 0.0
        )
    return base | {
        "rollouts": texts,
        "rollout_windows": windows,
        "parse_status": statuses,
        "ious": ious,
        "rewards": rewards,
        "mean_iou": mean,
        "std_iou": statistics.pstdev(ious),
        **{f"pass@{t:g}": sum(v >= t for v in ious) / len(ious) for t in PASS_THRESHOLDS},
        "parse_failure_rate": sum(s != "ok" for s in statuses) / len(statuses),
        "greedy_iou": greedy_iou,
        "difficulty": 1.0 - mean,
    }


def score_shard(
    shard: int, rows: list[dict], backend: InferenceBackend, cfg: DifficultyConfig, progress=None
) -> dict:
    """Score one shard (skipped when its finished table exists); returns its counts."""
    rid = run_id(cfg, backend.identity)
    path = cfg.out / "scores" / f"shard-{shard:05d}-of-{cfg.shards:05d}.parquet"
    if path.is_file():
        done = pq.read_table(path, columns=["status", "run_id"])
        if set(done["run_id"].to_pylist()) <= {rid} and "failed" not in done["status"].to_pylist():
            return {"shard": shard, "rows": done.num_rows, "skipped": True, "failed": 0}
    cache = CallCache(cfg.out / "calls" / f"shard-{shard:05d}.jsonl")
    requests = [_request(row, cfg) for row in rows]
    answers = cache.run(backend, requests, cfg.rollout_params, progress, f"rollouts, shard {shard}")
    greedy = {}
    if cfg.greedy:
        greedy_params = GenerationParams(n=1, temperature=0.0, max_tokens=cfg.max_tokens, seed=cfg.seed)
        greedy = cache.run(backend, requests, greedy_params, progress, f"greedy, shard {shard}")
    records = []
    for row in rows:
        answer = answers[row["uid"]]
        if answer.get("status") != "ok" or (cfg.greedy and greedy[row["uid"]].get("status") != "ok"):
            error = answer.get("error") or (greedy.get(row["uid"], {}).get("error")) or "failed"
            records.append(score_row(row, None, None, cfg, rid, error))
            continue
        greedy_text = greedy[row["uid"]]["texts"][0] if cfg.greedy else None
        records.append(score_row(row, answer["texts"], greedy_text, cfg, rid))
    write_table_atomic(pa.Table.from_pylist(records, schema=SCORE_SCHEMA), path)
    return {
        "shard": shard,
        "rows": len(records),
        "skipped": False,
        "failed": sum(r["status"] == "failed" for r in records),
    }


def shard_rows(cfg: DifficultyConfig) -> dict[int, list[dict]]:
    rows = sorted(load_rows(cfg.data, cfg.video_root, cfg.limit), key=lambda r: r["uid"])
    shards: dict[int, list[dict]] = {k: [] for k in range(cfg.shards)}
    for row in rows:
        shards[shard_of(row["uid"], cfg.shards)].append(row)
    return shards


def score_difficulty(
    cfg: DifficultyConfig,
    backend: InferenceBackend | None = None,
    backend_factory=None,
    progress=None,
    executor=None,
) -> dict[str, Any]:
    """Score every shard with ``backend`` here, or with replicas made by ``backend_factory`` on an
    ``executor`` (``cfg.engine == "ray"``: ``vtg_data.stages.difficulty_ray.score_with_ray``, which
    the caller chooses; the stage never imports its executor)."""
    start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    shards = shard_rows(cfg)
    if cfg.engine == "ray":
        if backend_factory is None or executor is None:
            raise ValueError(
                "the ray engine needs a backend factory (one model replica per worker) and its executor "
                "(executor=vtg_data.stages.difficulty_ray.score_with_ray)"
            )
        results, identity = executor(shards, cfg, backend_factory, cfg.gpus_per_worker)
    else:
        if backend is None:
            raise ValueError("score-difficulty needs a policy backend")
        identity = backend.identity
        results = [score_shard(k, rows, backend, cfg, progress) for k, rows in shards.items()]
    table = read_scores(cfg.out)
    ok = table.filter(pa.compute.equal(table["status"], "ok")) if table.num_rows else table
    failed = table.filter(pa.compute.equal(table["status"], "failed")) if table.num_rows else table
    manifest = {
        "stage": "score-difficulty",
        "toolkit_version": __version__,
        "run_id": run_id(cfg, identity),
        "policy": asdict(identity),
        # the distribution exactly as sampled, and what the backend overrode or checked to get it
        "sampling": asdict(cfg.rollout_params),
        "backend_notes": backend_notes(backend) if backend is not None else "per worker",
        "prompt": {"name": cfg.prompt, "hash": get_prompt(cfg.prompt).hash},
        "config": jsonable(asdict(cfg)),
        "decoder": getattr(backend, "decode_backend", None) if backend is not None else "per worker",
        "inputs": [
            {"file": t, "sha256": sha256_file(Path(t))}
            for t in sorted({r["_table"] for rs in shards.values() for r in rs})
        ],
        "counts": {
            "samples": sum(len(rs) for rs in shards.values()),
            "scored": ok.num_rows,
            "failed": table.num_rows - ok.num_rows,
            "shards_skipped": sum(r["skipped"] for r in results),
            "parse_failures": int(
                sum(sum(s != "ok" for s in statuses) for statuses in ok["parse_status"].to_pylist())
            ),
        },
        "usage": call_usage(cfg.out, identity.model),
        "failures": group_failures(
            dict(zip(failed["uid"].to_pylist(), failed["error"].to_pylist(), strict=True))
        ),
        "mean_iou_histogram": histogram(ok["mean_iou"].to_pylist()) if ok.num_rows else [],
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(cfg.out / "manifest.json", manifest)
    return manifest


def call_usage(folder: Path, model: str) -> dict | None:
    """Billed tokens and cost of the answers cached in the run's call files (a hosted policy)."""
    answers = []
    for path in sorted((Path(folder) / "calls").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("status") == "ok" and record.get("usage"):
                answers.append(record)
    return Spend.of(answers).record(price_for(model)) if answers else None


def read_scores(folder: Path) -> pa.Table:
    files = sorted((Path(folder) / "scores").glob("shard-*.parquet"))
    if not files:
        return pa.Table.from_pylist([], schema=SCORE_SCHEMA)
    return pa.concat_tables([pq.read_table(f) for f in files]).cast(SCORE_SCHEMA)


def histogram(values: list[float], bins: int = 20) -> list[int]:
    counts = Counter(min(int(v * bins), bins - 1) for v in values)
    return [counts.get(i, 0) for i in range(bins)]
