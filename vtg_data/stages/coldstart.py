"""``vtg-data build coldstart``: teacher traces -> named filters with a funnel -> optional verified
rewrite -> SFT messages.

Run folder (``out``)::

    traces.jsonl        every generated teacher answer as it arrived (the resume cache)
    rewrites.jsonl      every rewrite as it arrived
    data/train-XXXXX-of-NNNNN.parquet   the cold-start set, sharded by a hash of the uid
    rejects.parquet     every rejected trace with the rule and the reason
    manifest.json       inputs' hashes, the config, teacher and prompts, the funnel overall and per source

(About 400 lines: the stage is one pass over the traces; the rules are in ``coldstart_rules`` and
the import of traces made elsewhere in ``coldstart_import``, what remains is the pass itself,
rewriting and writing the run folder.)

A trace goes through the rules in order; the first that fails rejects it (``coldstart_rules``).
Among a sample's accepted traces the one with the highest IoU is kept (then the shortest). A
rewrite is kept only if its final window equals the original's within 0.1 s and it passes every
rule again; otherwise the original stays and the fallback is counted. Model answers are cached by
request key, so a run killed midway and rerun asks nothing twice and writes the same bytes.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from vtg_data import __version__
from vtg_data.corpora.base import sha256_file
from vtg_data.grounding.answer import time_answer
from vtg_data.grounding.metrics import iou
from vtg_data.grounding.prompts import get_prompt
from vtg_data.leakage import video_key
from vtg_data.lvlm import GenerationParams, InferenceBackend, Request, backend_notes
from vtg_data.lvlm.pricing import Spend, price_for
from vtg_data.schema import QUERY_SCHEMA, write_table_atomic
from vtg_data.stages.coldstart_import import import_traces
from vtg_data.stages.coldstart_rules import RULE_ORDER, RuleContext, RuleOptions, Trace, apply_rules
from vtg_data.stages.common import Budget, CallCache, jsonable, shard_of, write_json_atomic
from vtg_data.stages.failures import group_failures
from vtg_data.tables import load_rows
from vtg_data.video import SamplingPolicy

TARGETS = ("teacher", "gt")
_CONTENT = pa.struct([pa.field("type", pa.string()), pa.field("text", pa.string())])
MESSAGES_TYPE = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.list_(_CONTENT))]))
COLDSTART_SCHEMA = pa.schema(
    [
        *QUERY_SCHEMA,
        pa.field("messages", MESSAGES_TYPE, nullable=False),
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("teacher_prompt", pa.string()),
        pa.field("trace_index", pa.int32(), nullable=False),
        pa.field("trace", pa.string(), nullable=False),
        pa.field("trace_original", pa.string(), nullable=False),
        pa.field("rewritten", pa.bool_(), nullable=False),
        pa.field("teacher_window", pa.list_(pa.float64()), nullable=False),
        pa.field("target_window", pa.list_(pa.float64()), nullable=False),
        pa.field("iou", pa.float64(), nullable=False),
        pa.field("verdicts", pa.string(), nullable=False),
    ],
    metadata=QUERY_SCHEMA.metadata | {b"vtg_data.table": b"coldstart"},
)
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string()),
        pa.field("source", pa.string()),
        pa.field("trace_index", pa.int32()),
        pa.field("origin", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("text", pa.string()),
    ]
)


@dataclass(frozen=True)
class ColdstartConfig:
    """Options of ``vtg-data build coldstart``; saved in the manifest."""

    data: tuple[Path, ...]
    out: Path
    import_files: tuple[Path, ...] = ()
    teacher_prompt: str = "coldstart_teacher"
    teacher_sees_gt: bool = False
    k: int = 1
    teacher_generation: GenerationParams = field(
        default_factory=lambda: GenerationParams(temperature=0.0, max_tokens=1024)
    )
    policy: SamplingPolicy = field(default_factory=SamplingPolicy)
    rules: tuple[str, ...] = RULE_ORDER
    options: RuleOptions = field(default_factory=RuleOptions)
    bench: tuple[Path, ...] = ()
    rewrite: bool = False
    rewrite_prompt: str = "coldstart_rewrite"
    rewrite_tolerance: float = 0.1
    target: str = "teacher"
    student_prompt: str = "tvg_r1_think"
    shards: int = 4
    video_root: Path | None = None
    tokenizer: str | None = None  # a tokenizer to count trace tokens; whitespace words without one
    price_input: float | None = None  # USD per million prompt tokens (default: the known model's list price)
    price_output: float | None = None  # USD per million output tokens (thinking tokens included)
    budget: float | None = None  # USD: stop cleanly when the teacher's calls have cost this much
    dry_run: int | None = None  # ask the teacher about this many samples, then project the whole table

    def __post_init__(self) -> None:
        unknown = [r for r in self.rules if r not in RULE_ORDER]
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; rules are {', '.join(RULE_ORDER)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}")
        if self.k < 1 or self.shards < 1:
            raise ValueError("k and shards must be >= 1")
        if self.dry_run is not None and self.dry_run < 1:
            raise ValueError("dry_run must be >= 1 sample")
        if self.budget is not None and self.budget <= 0:
            raise ValueError("budget must be > 0 (USD)")
        if self.teacher_sees_gt and self.teacher_prompt == "coldstart_teacher":
            object.__setattr__(self, "teacher_prompt", "coldstart_teacher_gt")
        for name in (self.teacher_prompt, self.student_prompt, self.rewrite_prompt):
            get_prompt(name)


@dataclass
class ColdstartResult:
    out: Path
    rows: int
    funnel: dict[str, Any]
    manifest: dict[str, Any]


# ---------------------------------------------------------------------------------------------


def build_coldstart(
    cfg: ColdstartConfig,
    teacher: InferenceBackend | None = None,
    rewriter: InferenceBackend | None = None,
    progress=None,
) -> ColdstartResult:
    start = time.perf_counter()
    if teacher is None and not cfg.import_files:
        raise ValueError("give teacher traces: --import FILE, or a teacher model to generate them")
    if cfg.rewrite and rewriter is None:
        raise ValueError("rewriting needs a rewrite model")
    cfg.out.mkdir(parents=True, exist_ok=True)
    samples = sorted(load_rows(cfg.data, cfg.video_root), key=lambda r: r["uid"])
    by_uid = {s["uid"]: s for s in samples}

    traces: list[Trace] = []
    unmatched: list[str] = []
    imported = None
    if cfg.import_files:
        imported = import_traces(list(cfg.import_files), samples)
        unmatched = imported.unmatched
        counters: Counter = Counter()
        for uid, text, origin in imported.traces:
            traces.append(Trace(uid, counters[uid], text, origin))
            counters[uid] += 1
    generation_failed: dict[str, str] = {}
    teacher_template = get_prompt(cfg.teacher_prompt)
    price = (
        price_for(teacher.identity.model, cfg.price_input, cfg.price_output) if teacher is not None else None
    )
    spend = Spend()
    if teacher is not None:
        if cfg.budget is not None and price is None:
            raise ValueError(
                f"--budget needs the price of {teacher.identity.model}: give --price-input and --price-output"
            )
        params = replace(cfg.teacher_generation, n=cfg.k)
        asked = samples[: cfg.dry_run] if cfg.dry_run else samples
        requests = [_teacher_request(s, cfg) for s in asked]
        cache = CallCache(cfg.out / "traces.jsonl")
        budget = (
            Budget(cfg.budget, price, Spend.of(cache.answers.values())) if cfg.budget is not None else None
        )
        answers = cache.run(teacher, requests, params, progress, "teacher traces", budget=budget)
        spend = Spend.of(a for a in answers.values() if a.get("status") == "ok")
        if cfg.dry_run:
            report = project_spend(
                answers, len(samples), price, getattr(teacher, "concurrency", 1), cfg, teacher
            )
            write_json_atomic(cfg.out / "dry_run.json", report)
            return ColdstartResult(cfg.out, 0, {}, {"dry_run": report, "counts": {}, "failures": []})
        origin = f"{teacher.identity.backend}:{teacher.identity.model}"
        for uid, answer in answers.items():
            if answer.get("status") != "ok":
                generation_failed[uid] = answer.get("error") or "failed"
                continue
            offset = sum(1 for t in traces if t.uid == uid)
            for i, text in enumerate(answer["texts"]):
                traces.append(Trace(uid, offset + i, text, origin))
    traces.sort(key=lambda t: (t.uid, t.index))

    ctx = _rule_context(cfg)
    rules = list(cfg.rules)
    funnel_rows: dict[str, Counter] = defaultdict(Counter)  # source -> counts
    rejected: list[dict] = []
    accepted: dict[str, list[Trace]] = defaultdict(list)
    for trace in traces:
        sample = by_uid[trace.uid]
        source = sample["source"]
        funnel_rows[source]["in"] += 1
        failed_rule = apply_rules(trace, sample, rules, ctx)
        if failed_rule is None:
            funnel_rows[source]["out"] += 1
            accepted[trace.uid].append(trace)
            words = set(_query_words(sample["query"]))
            ctx.accepted_queries.setdefault(sample["video_id"], []).append((trace.uid, words))
        else:
            funnel_rows[source][f"rejected:{failed_rule}"] += 1
            rejected.append({"uid": trace.uid, "source": source, "trace_index": trace.index, "origin": trace.origin,
                             "rule": failed_rule, "reason": trace.verdicts[failed_rule]["reason"],
                             "text": trace.text[:2000]})  # fmt: skip

    chosen = {
        uid: min(ts, key=lambda t: (-_trace_iou(t, by_uid[uid]), len(t.text), t.index))
        for uid, ts in accepted.items()
    }
    rewrite_stats: Counter = Counter()
    final_text = {uid: t.text for uid, t in chosen.items()}
    if cfg.rewrite and chosen:
        final_text, rewrite_stats = _rewrite(chosen, by_uid, cfg, rewriter, rules, ctx, progress)

    rows = [
        _sft_row(by_uid[uid], chosen[uid], final_text[uid], cfg, teacher_template) for uid in sorted(chosen)
    ]
    table = pa.Table.from_pylist(rows, schema=COLDSTART_SCHEMA)
    written = _write_shards(table, cfg)
    write_table_atomic(pa.Table.from_pylist(rejected, schema=REJECTS_SCHEMA), cfg.out / "rejects.parquet")

    funnel = _funnel(funnel_rows, rules)
    if imported is not None:  # records that never reached a rule: no sample, or several
        funnel["imports"] = {"matched": len(imported.traces), "by_containment": imported.by_containment,
                             "ambiguous": len(imported.ambiguous), "unmatched": len(imported.unmatched)}  # fmt: skip
    manifest = {
        "stage": "build coldstart",
        "toolkit_version": __version__,
        "config": jsonable(asdict(cfg)),
        "inputs": {
            "tables": [
                {"file": t, "sha256": sha256_file(Path(t))} for t in sorted({s["_table"] for s in samples})
            ],
            "imports": [{"file": str(p), "sha256": sha256_file(Path(p))} for p in cfg.import_files],
            "bench": [str(p) for p in cfg.bench],
        },
        "teacher": asdict(teacher.identity) if teacher is not None else None,
        "teacher_sampling": asdict(replace(cfg.teacher_generation, n=cfg.k)),
        "teacher_backend_notes": backend_notes(teacher) if teacher is not None else None,
        # tokens and cost of every teacher answer this table holds (earlier runs' included)
        "teacher_usage": spend.record(price) if teacher is not None else None,
        "teacher_saw_ground_truth": cfg.teacher_sees_gt,
        "prompts": {
            "teacher": {"name": teacher_template.name, "hash": teacher_template.hash}
            if teacher is not None
            else None,
            "student": {"name": cfg.student_prompt, "hash": get_prompt(cfg.student_prompt).hash},
            "rewrite": {"name": cfg.rewrite_prompt, "hash": get_prompt(cfg.rewrite_prompt).hash}
            if cfg.rewrite
            else None,
        },
        "rewriter": asdict(rewriter.identity) if cfg.rewrite and rewriter is not None else None,
        "counts": {
            "samples": len(samples),
            "traces": len(traces),
            "imports_unmatched": len(unmatched),
            "imports_ambiguous": len(imported.ambiguous) if imported else 0,
            "imports_matched_by_containment": imported.by_containment if imported else 0,
            "generation_failed": len(generation_failed),
            "samples_with_accepted_trace": len(chosen),
            "rows": table.num_rows,
            "rewrite": dict(rewrite_stats),
        },
        "funnel": funnel,
        "unmatched_examples": unmatched[:20],
        "ambiguous_examples": imported.ambiguous[:20] if imported else [],
        "generation_failures": dict(list(generation_failed.items())[:20]),
        "failures": group_failures(generation_failed),
        "outputs": [str(p.relative_to(cfg.out)) for p in written],
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(cfg.out / "manifest.json", manifest)
    return ColdstartResult(cfg.out, table.num_rows, funnel, manifest)


def _teacher_request(sample: dict, cfg: ColdstartConfig) -> Request:
    template = get_prompt(cfg.teacher_prompt)
    fields = {}
    if cfg.teacher_sees_gt:
        gt = sample["windows"][0]
        fields = {"gt_start": gt[0], "gt_end": gt[1]}
    return Request(sample["uid"], template.messages(sample["query"], **fields), sample["_video"], cfg.policy)


def _rule_context(cfg: ColdstartConfig) -> RuleContext:
    if cfg.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer)

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:

        def count(text: str) -> int:
            return len(text.split())

    bench = set()
    if cfg.bench:
        for row in load_rows(cfg.bench):
            bench.add(video_key(row["video_id"], row.get("parent_video_id")))
    return RuleContext(cfg.options, count, bench)


def _query_words(query: str) -> list[str]:
    from vtg_data.leakage import query_key

    return query_key(query).split()


def _trace_iou(trace: Trace, sample: dict) -> float:
    if trace.iou is not None:
        return trace.iou
    return max(iou(trace.window, gt) for gt in sample["windows"]) if trace.window else 0.0


def _rewrite(chosen, by_uid, cfg: ColdstartConfig, rewriter, rules, ctx, progress):
    template = get_prompt(cfg.rewrite_prompt)
    requests = [
        Request(uid, template.messages(by_uid[uid]["query"], video=False, trace=trace.text), None, cfg.policy)
        for uid, trace in sorted(chosen.items())
    ]
    answers = CallCache(cfg.out / "rewrites.jsonl").run(rewriter, requests, GenerationParams(max_tokens=1024),
                                                        progress, "rewrites")  # fmt: skip
    stats: Counter = Counter()
    final = {}
    for uid, trace in chosen.items():
        stats["asked"] += 1
        answer = answers.get(uid, {})
        if answer.get("status") != "ok" or not answer.get("texts"):
            stats["fallback:rewrite_failed"] += 1
            final[uid] = trace.text
            continue
        candidate = Trace(uid, trace.index, answer["texts"][0], "rewrite")
        failed = apply_rules(candidate, by_uid[uid], rules, ctx)
        if failed is not None:
            stats[f"fallback:{failed}"] += 1
            final[uid] = trace.text
            continue
        if (
            candidate.window is None
            or trace.window is None
            or max(abs(candidate.window[0] - trace.window[0]), abs(candidate.window[1] - trace.window[1]))
            > cfg.rewrite_tolerance
        ):
            stats["fallback:window_changed"] += 1
            final[uid] = trace.text
            continue
        stats["kept"] += 1
        final[uid] = candidate.text
    return final, stats


_ANSWER_BLOCK = re.compile(r"<(time|answer)>.*?</\1>", re.DOTALL)


def _sft_row(sample: dict, trace: Trace, text: str, cfg: ColdstartConfig, teacher_template) -> dict:
    rewritten = text != trace.text
    if cfg.target == "gt":
        gt = max(sample["windows"], key=lambda w: iou(trace.window, w))
        target = [float(gt[0]), float(gt[1])]
        answer = time_answer(target)
        text = _ANSWER_BLOCK.sub(lambda m: answer, text, count=1)
    else:
        target = [float(trace.window[0]), float(trace.window[1])]
        if trace.raw_window is not None and tuple(trace.window) != tuple(trace.raw_window):
            # clamped into the video by the range rule: the answer the model learns says so too
            text = _ANSWER_BLOCK.sub(lambda m: time_answer(target), text, count=1)
    student = get_prompt(cfg.student_prompt)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": student.system}]},
        {
            "role": "user",
            "content": [
                {"type": "video", "text": None},
                {"type": "text", "text": student.user_text(sample["query"])},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": text}]},
    ]
    row = {name: sample[name] for name in QUERY_SCHEMA.names}
    return row | {
        "messages": messages,
        "teacher": trace.origin,
        "teacher_prompt": teacher_template.id if not trace.origin.startswith("import:") else None,
        "trace_index": trace.index,
        "trace": text,
        "trace_original": trace.text,
        "rewritten": rewritten,
        "teacher_window": [float(trace.window[0]), float(trace.window[1])],
        "target_window": target,
        "iou": _trace_iou(trace, sample),
        "verdicts": json.dumps(trace.verdicts, sort_keys=True, default=str),
    }


def _write_shards(table: pa.Table, cfg: ColdstartConfig) -> list[Path]:
    folder = cfg.out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shard_ids = [shard_of(uid, cfg.shards) for uid in table["uid"].to_pylist()]
    written = []
    for k in range(cfg.shards):
        part = table.filter(pa.array([s == k for s in shard_ids], type=pa.bool_()))
        path = folder / f"train-{k:05d}-of-{cfg.shards:05d}.parquet"
        write_table_atomic(part, path)
        written.append(path)
    for stale in folder.glob("train-*.parquet"):  # a rerun with fewer shards leaves no orphans
        if stale not in written:
            stale.unlink()
    return written


def _funnel(rows: dict[str, Counter], rules: list[str]) -> dict[str, Any]:
    def one(counts: Counter) -> dict[str, Any]:
        remaining = counts["in"]
        steps = []
        for rule in rules:
            rejected = counts[f"rejected:{rule}"]
            steps.append({"rule": rule, "in": remaining, "rejected": rejected, "out": remaining - rejected})
            remaining -= rejected
        return {"in": counts["in"], "steps": steps, "out": counts["out"]}

    total: Counter = Counter()
    for counts in rows.values():
        total.update(counts)
    return {"overall": one(total), "by_source": {source: one(c) for source, c in sorted(rows.items())}}


def project_spend(
    answers: dict[str, dict], total: int, price, concurrency: int, cfg: ColdstartConfig, teacher
) -> dict:
    """From a dry run's answers: tokens per sample, and the tokens, cost and time the whole table
    would take at this concurrency (time from the answers' own latency)."""
    ok = [a for a in answers.values() if a.get("status") == "ok"]
    spend = Spend.of(ok)
    asked = len(answers)
    per = {
        key: (getattr(spend, key) / len(ok) if ok else 0.0)
        for key in ("prompt_tokens", "output_tokens", "thought_tokens")
    }
    seconds = sum(float(a.get("seconds") or 0.0) for a in ok) / len(ok) if ok else 0.0
    projected = {key: round(value * total) for key, value in per.items()}
    cost = (
        price.cost(projected["prompt_tokens"], projected["output_tokens"] + projected["thought_tokens"])
        if price
        else None
    )
    return {
        "model": teacher.identity.model,
        "samples_asked": asked,
        "answered": len(ok),
        "failed": asked - len(ok),
        "k": cfg.k,
        "per_sample": {key: round(value, 1) for key, value in per.items()} | {"seconds": round(seconds, 3)},
        "table_samples": total,
        "projected": projected
        | {
            "cost_usd": round(cost, 2) if cost is not None else None,
            "hours": round(seconds * total / max(concurrency, 1) / 3600, 2),
            "concurrency": concurrency,
        },
        "spent": spend.record(price),
        "price": asdict(price) if price is not None else None,
    }
