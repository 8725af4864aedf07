"""Building training sets: ``build coldstart`` (``ColdstartConfig``), ``score-difficulty``
(``DifficultyConfig``), ``build rl`` (``RLConfig``); options generated from those configs."""

from __future__ import annotations

import typer
from rich.table import Table

from vtg_data.cli.common import (
    BACKEND_OPTIONS,
    backend_from,
    console,
    fail,
    out,
    print_histogram,
    progress,
    report_failures,
)
from vtg_data.cli.options import Group, build, command, explicit, flags, option
from vtg_data.stages.coldstart import ColdstartConfig
from vtg_data.stages.difficulty import DifficultyConfig
from vtg_data.stages.rlset import RLConfig

COLDSTART = Group(
    ColdstartConfig,
    skip={
        "rules": "--disable RULE takes rules out of the fixed order",
        "rewrite": "on when --rewrite-model is given",
        "teacher_generation.n": "--k: the stage asks for k traces per sample",
    },
    rename={"options.max_tokens": "trace_max_tokens", "options.min_tokens": "trace_min_tokens",
            "options.parse_mode": "trace_parse_mode"},
    spell={"import_files": "--import"},
    help={"k": "Traces per sample.", "import_files": "Teacher traces made elsewhere (JSONL/JSON).",
          "teacher_prompt": "Prompt the teacher is asked with.", "teacher_sees_gt": "Show the teacher the annotated moment.",
          "options.iou_min": "iou rule: least IoU of the trace's window with the ground truth.",
          "options.min_chars": "length_chars rule: shortest trace.", "options.max_chars": "length_chars rule: longest trace.",
          "options.min_tokens": "length_tokens rule: fewest trace tokens.", "options.max_tokens": "length_tokens rule: most trace tokens.",
          "options.max_span": "span rule: largest answer span as a fraction of the video.",
          "options.parse_mode": "parse rule's parser: tolerant | strict.",
          "bench": "Benchmark tables for the leakage rule.", "rewrite_prompt": "Prompt of the rewriter.",
          "rewrite_tolerance": "A rewrite is kept only if its window is within this many seconds of the original's.",
          "target": "SFT answer: teacher (its own window) | gt.", "student_prompt": "Prompt of the SFT messages."},
)  # fmt: skip
DIFFICULTY = Group(DifficultyConfig, spell={"k": "--k|-k"})
RLSET = Group(RLConfig, skip={"quotas": "--quota SOURCE=N (repeatable)"}, rename={"policies": "policy"},
              help={"scores": "A score-difficulty run folder.",
                    "policies": "random (no difficulty: a uniform draw of --size) | band | nonzero-variance | gaussian | "
                                "timelens | bins | span-stratified | partial-annotation "
                                "(repeatable, composed in order; at most one of timelens, bins, span-stratified).",
                    "lo": "band: lower bound on mean IoU (exclusive).", "hi": "band: upper bound on mean IoU (exclusive).",
                    "mu": "gaussian: centre on mean IoU.", "sigma": "gaussian: width.",
                    "drop_zero": "gaussian: drop mean IoU 0 first.", "timelens_mu": "timelens: centre of the difficulty weight.",
                    "timelens_sigma": "timelens: width of the difficulty weight.",
                    "duration_buckets": "timelens: bucket edges on video duration, seconds (TimeLens: 0,30,...,240,inf).",
                    "timelens_min_duration": "timelens: drop videos shorter than this (s).",
                    "timelens_max_duration": "timelens: drop videos longer than this (s).",
                    "span_target": "span-stratified: benchmark tables whose span length x coverage to match (repeatable).",
                    "span_length_edges": "span-stratified: edges on annotated seconds.",
                    "span_coverage_edges": "span-stratified: edges on the share of the video annotated.",
                    "partial_action": "partial-annotation: drop | flag (both list the samples found).",
                    "partial_min_parsed": "partial-annotation: least share of rollouts that gave a window.",
                    "partial_agreement": "partial-annotation: least mean IoU of rollouts with their consensus window.",
                    "partial_max_gt_share": "partial-annotation: the ground truth fills at most this share of it.",
                    "partial_gt_inside": "partial-annotation: least share of the ground truth inside it.",
                    "bin_edges": "bins: edges on difficulty (1 - mean IoU).", "bin_shares": "bins: share of each bin.",
                    "size": "Total rows to keep."})  # fmt: skip


def print_projection(report: dict) -> None:
    """A dry run's tokens per sample and what the whole table would take."""
    per, projected = report["per_sample"], report["projected"]
    table = Table(
        title=f"dry run: {report['answered']} of {report['samples_asked']} samples answered by {report['model']}"
    )
    for column in ("", "prompt tokens", "output tokens", "thinking tokens", "cost (USD)", "time"):
        table.add_column(column, justify="left" if not column else "right")
    price = report["price"]
    spent = report["spent"]["cost_usd"]
    table.add_row("per sample", f"{per['prompt_tokens']:,.0f}", f"{per['output_tokens']:,.0f}",
                  f"{per['thought_tokens']:,.0f}", "", f"{per['seconds']:.1f} s")  # fmt: skip
    cost = f"{projected['cost_usd']:,.2f}" if projected["cost_usd"] is not None else "no price"
    table.add_row(f"all {report['table_samples']:,} samples", f"{projected['prompt_tokens']:,}",
                  f"{projected['output_tokens']:,}", f"{projected['thought_tokens']:,}", cost,
                  f"{projected['hours']:,.1f} h at concurrency {projected['concurrency']}")  # fmt: skip
    out.print(table)
    if price:
        console.print(f"price: {price['input_per_million']} / {price['output_per_million']} USD per million "
                      f"input / output tokens ({price['source']}); this dry run spent {spent:.4f} USD")  # fmt: skip
    else:
        console.print("no price known for this model: give --price-input and --price-output")


def register(app: typer.Typer, build_app: typer.Typer) -> None:
    coldstart_flags, difficulty_flags, rl_flags = flags(COLDSTART), flags(DIFFICULTY), flags(RLSET)

    def run_coldstart(ctx: typer.Context, values: dict) -> None:
        from vtg_data.lvlm.pricing import BudgetReached
        from vtg_data.lvlm.served_video import ServerMismatch
        from vtg_data.stages.coldstart import build_coldstart
        from vtg_data.stages.coldstart_rules import RULE_ORDER

        teacher = rewriter = None

        try:
            disabled = set(values["disable"] or [])
            unknown = sorted(disabled - set(RULE_ORDER))
            if unknown:
                fail(f"unknown rule(s) {unknown}; rules are {', '.join(RULE_ORDER)}")
            cfg = build(ColdstartConfig, coldstart_flags, values, explicit(ctx, values),
                        fixed={"rules": tuple(r for r in RULE_ORDER if r not in disabled),
                               "rewrite": values["rewrite_model"] is not None})  # fmt: skip
            teacher = (backend_from(values, values["teacher_backend"], values["teacher_model"])
                       if values["teacher_model"] else None)  # fmt: skip
            rewriter = (backend_from(values, values["rewrite_backend"], values["rewrite_model"])
                        if values["rewrite_model"] else None)  # fmt: skip
            with progress() as bar:
                result = build_coldstart(cfg, teacher, rewriter, bar)
        except (ValueError, FileNotFoundError, ImportError, ServerMismatch, BudgetReached) as exc:
            fail(str(exc))
        finally:
            for backend in (teacher, rewriter):
                if callable(getattr(backend, "close", None)):
                    backend.close()  # a hosted teacher's uploads are deleted here
        if cfg.dry_run:
            print_projection(result.manifest["dry_run"])
            return
        overall = result.funnel["overall"]
        table = Table(
            title=f"cold-start funnel: {overall['in']} traces -> {overall['out']} accepted -> {result.rows} rows"
        )
        for column in ("rule", "in", "rejected", "out"):
            table.add_column(column, justify="left" if column == "rule" else "right")
        for step in overall["steps"]:
            table.add_row(step["rule"], str(step["in"]), str(step["rejected"]), str(step["out"]))
        out.print(table)
        imports = result.funnel.get("imports")
        if imports:
            console.print(f"imported records: {imports['matched']} matched ({imports['by_containment']} by a query inside "
                          f"their text), {imports['ambiguous']} ambiguous, {imports['unmatched']} unmatched (manifest.json)")  # fmt: skip
        rewrite = result.manifest["counts"]["rewrite"]
        if rewrite:
            console.print(f"rewrites: {rewrite}")
        console.print(f"run folder: {result.out}")
        usage = result.manifest.get("teacher_usage")
        if usage and usage["calls"]:
            cost = (
                f", {usage['cost_usd']:.4f} USD"
                if usage["cost_usd"] is not None
                else " (no price known: --price-input/--price-output)"
            )
            console.print(f"teacher: {usage['calls']} calls, {usage['prompt_tokens']} prompt + "
                          f"{usage['output_tokens'] + usage['thought_tokens']} output tokens{cost}")  # fmt: skip
        counts = result.manifest["counts"]
        asked = counts["samples"] if values["teacher_model"] else 0  # imported traces call no model
        report_failures(result.manifest["failures"], succeeded=asked - counts["generation_failed"], total=asked,
                        what="teacher calls")  # fmt: skip

    command(build_app, "coldstart", coldstart_flags, run_coldstart, extra=[
        option("teacher_model", str | None, None, "--teacher-model", help="Generate traces with this model."),
        option("teacher_backend", str, "hf", "--teacher-backend", help="hf | openai | vllm | gemini | template"),
        option("rewrite_model", str | None, None, "--rewrite-model", help="Rewrite accepted traces with this model."),
        option("rewrite_backend", str, "hf", "--rewrite-backend", help="hf | openai | vllm | gemini | template"),
        option("disable", list[str] | None, None, "--disable", help="Switch a rule off (repeatable)."),
        *BACKEND_OPTIONS,
    ], help="Teacher traces -> filters (with a funnel) -> optional verified rewrite -> SFT messages.")  # fmt: skip

    def run_difficulty(ctx: typer.Context, values: dict) -> None:
        import functools

        from vtg_data.lvlm.served_video import ServerMismatch
        from vtg_data.stages.difficulty import score_difficulty

        try:
            cfg = build(DifficultyConfig, difficulty_flags, values, explicit(ctx, values))
            factory = functools.partial(backend_from, values, values["backend"], values["model"])
            if cfg.engine == "ray":  # the factory is sent to the workers: one model replica each
                from vtg_data.stages.difficulty_ray import score_with_ray

                manifest = score_difficulty(cfg, backend_factory=factory, executor=score_with_ray)
            else:
                with progress() as bar:
                    manifest = score_difficulty(cfg, backend=factory(), progress=bar)
        except (ValueError, FileNotFoundError, ImportError, ServerMismatch) as exc:
            fail(str(exc))
        counts = manifest["counts"]
        console.print(f"scored {counts['scored']} of {counts['samples']} samples ({counts['failed']} failed, "
                      f"{counts['parse_failures']} rollouts did not parse); run {manifest['run_id']}")  # fmt: skip
        print_histogram("mean IoU over rollouts", manifest["mean_iou_histogram"])
        console.print(f"run folder: {cfg.out}")
        report_failures(
            manifest["failures"], succeeded=counts["scored"], total=counts["samples"], what="samples"
        )

    command(app, "score-difficulty", difficulty_flags, run_difficulty, extra=[
        option("model", str, ..., "--model", help="The policy: a model path or id (or a template name)."),
        option("backend", str, "hf", "--backend", help="hf | openai | vllm | gemini"),
        *BACKEND_OPTIONS,
    ], help="k policy rollouts per sample -> IoU statistics and difficulty (resumable, sharded).")  # fmt: skip

    def run_rl(ctx: typer.Context, values: dict) -> None:
        from vtg_data.stages.rlset import build_rl

        try:
            quotas = {}
            for item in values["quota"] or []:
                source, _, count = item.partition("=")
                quotas[source] = int(count)
            cfg = build(RLConfig, rl_flags, values, explicit(ctx, values), fixed={"quotas": quotas})
            manifest = build_rl(cfg)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        counts = manifest["counts"]
        console.print(
            f"selected {counts['selected']} of {counts['scored']} scored samples; removed per step {counts['removed']}"
        )
        histograms = manifest["mean_iou_histogram"]
        print_histogram("mean IoU: scored vs selected", histograms["before"], histograms["after"])
        print_policy_reports(manifest["policy_reports"], cfg.out)
        console.print(f"plot: {cfg.out / manifest['plot']}")

    command(build_app, "rl", rl_flags, run_rl, extra=[
        option("quota", list[str] | None, None, "--quota", help="SOURCE=N: at most N rows of a source (repeatable)."),
    ], help="Select a difficulty-controlled RL set from a scores table (no model runs).")  # fmt: skip


def print_policy_reports(reports: dict, folder) -> None:
    """What timelens, span-stratified and partial-annotation say about the draw they made."""
    if "timelens" in reports:
        table = Table(title=f"timelens: {reports['timelens']['quota_per_bucket']} rows per duration bucket")
        for column in ("bucket", "rows", "selected"):
            table.add_column(column, justify="left" if column == "bucket" else "right")
        for bucket in reports["timelens"]["buckets"]:
            table.add_row(bucket["bucket"], str(bucket["rows"]), str(bucket["selected"]))
        out.print(table)
    if "span-stratified" in reports:
        strata = reports["span-stratified"]
        distance = strata["tv_distance"]
        table = Table(title=f"span length: target vs pool vs selected (distance to target "
                            f"{distance['pool']:.3f} -> {distance['achieved']:.3f})")  # fmt: skip
        for column in ("span", "target", "pool", "selected"):
            table.add_column(column, justify="left" if column == "span" else "right")
        by_length = strata["by_length"]
        for i, name in enumerate(by_length["bins"]):
            table.add_row(
                name, *(f"{100 * by_length[key][i]:.1f}%" for key in ("target", "pool", "achieved"))
            )
        out.print(table)
        if strata["requested"] is not None and strata["selected"] < strata["requested"]:
            console.print(
                f"span-stratified: {strata['selected']} of {strata['requested']} rows (the pool ran short)"
            )
    if "partial-annotation" in reports:
        partial = reports["partial-annotation"]
        verb = "dropped" if partial["action"] == "drop" else "kept and flagged"
        console.print(
            f"partial-annotation: {partial['flagged']} samples {verb}; see {folder}/partial_annotations.jsonl"
        )
