"""``vtg-data eval``: score a predictions file (``EvalConfig``), or run a model on a benchmark and
score it (``ModelEvalConfig``, its frame policy and generation); options from those configs."""

from __future__ import annotations

from pathlib import Path

import typer

from vtg_data.cli.common import BACKEND_OPTIONS, backend_from, console, fail, progress, report_failures
from vtg_data.cli.options import Group, build, command, explicit, flags, option
from vtg_data.evaluate import EvalConfig
from vtg_data.stages.evaluate_model import ModelEvalConfig

MODEL_EVAL = Group(
    ModelEvalConfig,
    skip={
        "model": "--model (scoring a file needs none)",
        "data": "--data",
        "out": "--out (a folder with --model, metrics.json when scoring a file)",
        "generation": "--temperature, --top-p, --top-k, --repetition-penalty and --max-tokens (the budget follows the prompt unless given)",
        "backend_options": "built from the backend options (--base-url, --decoder, --batch-size, --frame-cache ...)",
        "limit": "--limit",
    },
)
SCORE_FILE = Group(EvalConfig, skip={"predictions": "--predictions", "gt": "--gt", "parse_mode": "shared",
                                     "hit_rule": "shared", "thresholds": "shared", "bootstrap": "shared",
                                     "protocol": "shared"},
                   spell={"format": "--format"})  # fmt: skip


def register(app: typer.Typer) -> None:
    model_flags = flags(MODEL_EVAL)
    file_flags = [f for f in flags(SCORE_FILE) if f.name not in {m.name for m in model_flags}]

    def run(ctx: typer.Context, values: dict) -> None:
        from vtg_data.evaluate import EvalInputError, evaluate, markdown_table, write_metrics
        from vtg_data.lvlm.served_video import ServerMismatch

        given = explicit(ctx, values)
        out_path = values["out_path"]
        try:
            if values["model"] is not None:
                result, out_file = _run_model(values, given, model_flags)
            else:
                if values["predictions"] is None or values["gt"] is None:
                    fail(
                        "give --predictions and --gt to score a file, or --model, --data and --out to run a model"
                    )
                file_values = {**values, "parse_mode": values["parse_mode"] or "tolerant"}
                cfg = build(EvalConfig, [*file_flags, *_shared(model_flags)], file_values, given,
                            fixed={"predictions": values["predictions"], "gt": values["gt"]})  # fmt: skip
                result, out_file = evaluate(cfg), out_path
        except (EvalInputError, ValueError, FileNotFoundError, ImportError, ServerMismatch) as exc:
            fail(str(exc))
        if result.metrics:
            print(markdown_table(result))
        counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
        protocol = result.card.get("protocol", {})
        console.print(
            f"[dim]{counts}; protocol {protocol.get('name', 'vtg-data')} ({protocol.get('origin', '')}); "
            f"parser {result.card['parse_mode']}, hit rule {result.card['hit_rule']}[/dim]"
        )
        if out_file is not None:
            if values["model"] is None:
                write_metrics(result, out_file)
            console.print(f"metrics: {out_file}")
        if values["model"] is not None:
            report_failures(result.card["failures"], succeeded=result.counts["scored"],
                            total=result.counts["rows"], what="queries")  # fmt: skip

    command(app, "eval", [*model_flags, *file_flags], run, extra=[
        option("predictions", Path | None, None, "--predictions", help="Predictions JSONL to score (with --gt)."),
        option("gt", Path | None, None, "--gt", help="Ground-truth table or the official QVHighlights JSONL."),
        option("model", str | None, None, "--model", help="Run this model (path or hub id) on --data, then score it."),
        option("data", list[Path] | None, None, "--data", help="Normalized benchmark table(s) or folder(s) (with --model)."),
        option("out_path", Path | None, None, "--out", help="metrics.json (scoring a file) or the output folder (--model)."),
        option("limit", int | None, None, "--limit", help="Only the first N queries."),
        option("temperature", float, 0.0, "--temperature", help="0 = greedy."),
        option("top_p", float, 1.0, "--top-p", help="Nucleus sampling mass (with --temperature > 0)."),
        option("top_k", int, 0, "--top-k", help="Sample from the k likeliest tokens (0: off; never the checkpoint's)."),
        option("repetition_penalty", float, 1.0, "--repetition-penalty", help="1: none."),
        option("max_tokens", int | None, None, "--max-tokens",
               help="New tokens per answer (default: 2048 for a think prompt, else 256)."),
        *BACKEND_OPTIONS,
    ], help="Score predictions (--predictions --gt), or run a model and score it (--model --data --out DIR).")  # fmt: skip


def _shared(model_flags):
    return [
        f for f in model_flags if f.name in ("parse_mode", "hit_rule", "thresholds", "bootstrap", "protocol")
    ]


def _run_model(values: dict, given: set[str], model_flags):
    from vtg_data.grounding.prompts import get_prompt
    from vtg_data.lvlm import GenerationParams
    from vtg_data.stages.evaluate_model import run_model_eval

    if not values["data"] or values["out_path"] is None:
        fail("--model needs --data and --out DIR")
    generation = GenerationParams(temperature=values["temperature"], top_p=values["top_p"], top_k=values["top_k"],
                                  repetition_penalty=values["repetition_penalty"],
                                  max_tokens=values["max_tokens"] or get_prompt(values["prompt"]).answer_budget)  # fmt: skip
    cfg = build(ModelEvalConfig, model_flags, values, given,
                fixed={"model": values["model"], "data": tuple(values["data"]), "out": values["out_path"],
                       "generation": generation, "limit": values["limit"]})  # fmt: skip
    backend = backend_from(values, cfg.backend, cfg.model)
    with progress() as bar:
        result = run_model_eval(cfg, backend=backend, progress=bar)
    return result, values["out_path"] / "metrics.json"
