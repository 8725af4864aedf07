"""``vtg-data eval --model``: run a model on a benchmark table, then score it.

Outputs in ``out``: ``predictions.jsonl`` (uid, raw texts, parsed windows, parse status, the
request's key), ``metrics.json`` (the numbers plus an eval card: model identity, prompt id and
hash, frame sampling, generation settings, decoder, parser, hit rule, inputs' hashes, counts) and
``metrics.md``. A number is never separated from how it was made.

Resumable: each response is appended to ``predictions.jsonl`` as it arrives; a rerun skips every
uid whose stored answer succeeded with the same request key (prompt, video, sampling, model), and
asks again for failed or changed ones. A request that failed (decode error, API error) is counted
and left out of the metrics, never scored as 0; an answer that does not parse scores 0 and is
counted as a parse failure.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vtg_data import __version__
from vtg_data.corpora.base import sha256_file
from vtg_data.evaluate import (
    EvalResult,
    hit_rule_of,
    markdown_table,
    protocol_card,
    score_text,
    write_metrics,
)
from vtg_data.files import write_text
from vtg_data.grounding.metrics import HIT_RULES, THRESHOLDS, SampleScore, best_match, grounding_report
from vtg_data.grounding.parse import MODES, parse_answer
from vtg_data.grounding.prompts import get_prompt
from vtg_data.grounding.protocols import PROTOCOLS
from vtg_data.lvlm import (
    BACKENDS,
    GenerationParams,
    InferenceBackend,
    Request,
    Response,
    backend_notes,
    make_backend,
)
from vtg_data.lvlm.pricing import Spend, price_for
from vtg_data.stages.failures import group_failures
from vtg_data.tables import load_rows as load_table_rows
from vtg_data.video import SamplingPolicy, plan_sampling, stream_info
from vtg_data.video.decode import DecodeError

PREDICTIONS = "predictions.jsonl"


@dataclass(frozen=True)
class ModelEvalConfig:
    """Options of ``vtg-data eval --model``; saved in the eval card."""

    model: str
    data: tuple[Path, ...]
    out: Path
    backend: str = "hf"
    prompt: str = "tvg_r1_think"
    policy: SamplingPolicy = field(default_factory=SamplingPolicy)
    # default: greedy, with the prompt's answer budget (2,048 new tokens for a think prompt)
    generation: GenerationParams | None = None
    parse_mode: str | None = None  # default: the prompt's own parser mode
    hit_rule: str = ">="
    thresholds: tuple[float, ...] = THRESHOLDS
    protocol: str = "vtg-data"  # vtg-data | tvg_r1 | time_r1 | timelens: a paper's whole scoring convention
    limit: int | None = None
    video_root: Path | None = None
    state_duration: bool = False
    state_frame_times: bool = False
    bootstrap: int = 1000
    backend_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        if self.parse_mode is not None and self.parse_mode not in MODES:
            raise ValueError(f"parse mode must be one of {MODES}")
        if self.hit_rule not in HIT_RULES:
            raise ValueError(f"hit rule must be one of {HIT_RULES}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")
        template = get_prompt(self.prompt)
        if self.generation is None:
            object.__setattr__(self, "generation", GenerationParams(max_tokens=template.answer_budget))


def load_rows(cfg: ModelEvalConfig) -> list[dict]:
    return load_table_rows(cfg.data, cfg.video_root, cfg.limit)


def build_request(row: dict, cfg: ModelEvalConfig) -> Request:
    template = get_prompt(cfg.prompt)
    frame_times = None
    if cfg.state_frame_times:
        try:
            info = stream_info(row["_video"])
        except DecodeError:
            info = None  # the backend reports the decode failure for this request
        if info is not None:
            plan = plan_sampling(cfg.policy, duration=info.duration, native_fps=info.fps, num_frames=info.num_frames,
                                 width=info.width, height=info.height)  # fmt: skip
            frame_times = [round(t, 2) for t in plan.timestamps]
    messages = template.messages(
        row["query"], duration=row["duration"] if cfg.state_duration else None, frame_times=frame_times
    )
    return Request(row["uid"], messages, row["_video"], cfg.policy)


def read_done(path: Path) -> dict[str, dict]:
    """Finished answers of an earlier run (a torn last line from a crash is ignored)."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[record["uid"]] = record
    return done


def run_model_eval(
    cfg: ModelEvalConfig, backend: InferenceBackend | None = None, progress=None
) -> EvalResult:
    start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(cfg)
    backend = backend or make_backend(cfg.backend, cfg.model, **cfg.backend_options)
    template = get_prompt(cfg.prompt)
    parse_mode = cfg.parse_mode or template.parse_mode
    requests = {row["uid"]: build_request(row, cfg) for row in rows}
    keys = {uid: request.key(cfg.generation, backend.identity) for uid, request in requests.items()}
    by_uid = {row["uid"]: row for row in rows}
    predictions_path = cfg.out / PREDICTIONS
    done = {
        uid: r
        for uid, r in read_done(predictions_path).items()
        if r.get("status") == "ok" and r.get("key") == keys.get(uid)
    }
    todo = [requests[uid] for uid in requests if uid not in done]
    task = progress.add_task("inference", total=len(todo)) if progress and todo else None

    with predictions_path.open("a") as sink:

        def persist(response: Response) -> None:
            record = _record(response, by_uid[response.uid], keys[response.uid], parse_mode)
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            if task is not None:
                progress.advance(task)

        for _ in backend.generate(todo, cfg.generation, persist):
            pass

    # Rewrite the predictions file in table order: one line per uid, the latest answer.
    latest = read_done(predictions_path)
    ordered = [latest[uid] for uid in requests if uid in latest]
    write_text(predictions_path, "".join(json.dumps(r) + "\n" for r in ordered))

    scores = []
    failed: dict[str, str] = {}
    for record in ordered:
        if record["status"] != "ok":
            failed[record["uid"]] = record.get("error") or "failed"
            continue
        row = by_uid[record["uid"]]
        if cfg.protocol == "vtg-data":
            windows = record["windows"]
            value, overlap = best_match(windows[0], row["windows"]) if windows else (0.0, 0.0)
            scores.append(SampleScore(record["uid"], row["source"], value, overlap, record["parse_status"]))
        else:  # the paper's reader on the raw answer
            scores.append(score_text(cfg.protocol, record["texts"][0], row, record["uid"]))
    rule = hit_rule_of(cfg.protocol, cfg.hit_rule)
    report = grounding_report(scores, cfg.thresholds, rule, cfg.bootstrap) if scores else {
        "overall": {}, "ci95": {}, "by_source": {}, "parse_failures": {}}  # fmt: skip
    counts = {
        "rows": len(rows),
        "scored": len(scores),
        "failed": len(failed),
        "parse_failures": sum(report["parse_failures"].values()),
    }
    card = {
        "toolkit_version": __version__,
        "model": asdict(backend.identity),
        "prompt": {"name": template.name, "version": template.version, "hash": template.hash},
        "sampling": asdict(cfg.policy),
        "generation": asdict(cfg.generation),
        "backend_notes": backend_notes(backend),
        "prompt_answer_budget": template.answer_budget,
        "decoder": getattr(backend, "decode_backend", None),
        "protocol": protocol_card(cfg.protocol, parse_mode, cfg.hit_rule),
        "parse_mode": parse_mode,
        "hit_rule": cfg.hit_rule if cfg.protocol == "vtg-data" else cfg.protocol,
        "thresholds": list(cfg.thresholds),
        "state_duration": cfg.state_duration,
        "state_frame_times": cfg.state_frame_times,
        "data": [
            {"file": t, "sha256": sha256_file(Path(t))} for t in dict.fromkeys(r["_table"] for r in rows)
        ],
        "limit": cfg.limit,
        "failures": group_failures(failed),
        # a hosted model's billed tokens and their cost at its list price (None: no price known)
        "usage": Spend.of(ordered).record(price_for(backend.identity.model))
        if any(r.get("usage") for r in ordered)
        else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    metrics = {k: round(v, 2) for k, v in report["overall"].items() if k not in ("n", "parse_failures")}
    detail = {k: report[k] for k in ("ci95", "by_source", "parse_failures")}
    detail["failed"] = dict(list(failed.items())[:20])
    result = EvalResult(metrics, card, counts, detail)
    write_metrics(result, cfg.out / "metrics.json")
    if metrics:
        (cfg.out / "metrics.md").write_text(markdown_table(result) + "\n")
    return result


def _record(response: Response, row: dict, key: str, parse_mode: str) -> dict:
    record: dict[str, Any] = {"uid": response.uid, "key": key, "status": response.status}
    if not response.ok:
        return record | {"error": response.error}
    parsed = parse_answer(
        response.texts[0], row["duration"] if parse_mode == "tolerant" else None, parse_mode
    )
    return record | {
        "texts": response.texts,
        "windows": [list(w) for w in parsed.windows],
        "parse_status": parsed.status,
        "parse_reason": parsed.reason,
        "prompt_tokens": response.prompt_tokens,
        "video": response.video,
        **({"usage": response.usage} if response.usage else {}),
    }
