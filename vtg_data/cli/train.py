"""``train sft`` (``SFTConfig``) and ``train rl`` (``GRPOConfig``): options generated from the
trainer configs, the data and held-out data, and presets applied before the explicit flags."""

from __future__ import annotations

import json

import typer

from vtg_data.cli.common import console, fail, progress
from vtg_data.cli.options import Group, build, command, explicit, flags, option
from vtg_data.train.grpo import GRPOConfig
from vtg_data.train.sft import SFTConfig

_SKIP = {"eval_data": "--eval-data and --eval-split (the rest as --data's)"}
_RENAME = {"data.path": "data", "workers": "num_workers"}
SFT = Group(SFTConfig, skip=_SKIP, rename=_RENAME)
GRPO = Group(GRPOConfig, skip=_SKIP, rename=_RENAME, spell={"k": "--k|-k"})

EVAL_OPTIONS = [
    option("eval_data", str | None, None, "--eval-data", help="Held-out data for periodic greedy mIoU."),
    option("eval_split", str, "test", "--eval-split", help="Split of the held-out data."),
]


def _held_out(values: dict):
    from vtg_data.train.options import TrainData

    if not values["eval_data"]:
        return None
    return TrainData(str(values["eval_data"]), values["video_root"], revision=values["revision"],
                     config=values["config"], split=values["eval_split"])  # fmt: skip


def register(train_app: typer.Typer) -> None:
    sft_flags, grpo_flags = flags(SFT), flags(GRPO)

    def run_sft(ctx: typer.Context, values: dict) -> None:
        from vtg_data.train.sft import train_sft

        try:
            cfg = build(
                SFTConfig, sft_flags, values, explicit(ctx, values), fixed={"eval_data": _held_out(values)}
            )
            with progress() as bar:
                result = train_sft(cfg, bar)
        except (ValueError, FileNotFoundError, ImportError) as exc:
            fail(str(exc))
        if not result["main_process"]:
            return  # the main process reports
        last = result["history"][-1] if result["history"] else {}
        console.print(f"sft: step {result['steps']}, loss {last.get('loss', float('nan')):.3f}; "
                      f"checkpoint {result['final_checkpoint']}")  # fmt: skip
        if "eval" in result:
            console.print(f"held-out: {json.dumps({k: round(v, 3) for k, v in result['eval'].items()})}")

    command(train_app, "sft", sft_flags, run_sft, extra=EVAL_OPTIONS,
            help="Supervised fine-tuning on the assistant tokens (cold-start traces or ground-truth answers).")  # fmt: skip

    def run_rl(ctx: typer.Context, values: dict) -> None:
        from vtg_data.train.grpo import PRESET_CONFIGS, train_grpo

        given = explicit(ctx, values)
        preset = values["preset"]
        try:
            if preset is not None and preset not in PRESET_CONFIGS:
                raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESET_CONFIGS)}")
            chosen = PRESET_CONFIGS.get(preset, {}) if preset else {}
            cfg = build(
                GRPOConfig, grpo_flags, values, given, preset=chosen, fixed={"eval_data": _held_out(values)}
            )
            if preset:
                kept = sorted(
                    f"--{f.name.replace('_', '-')}"
                    for f in grpo_flags
                    if f.name in given and f.path[0] in chosen
                )
                console.print(f"preset {preset}: {', '.join(sorted(chosen))} set"
                              + (f"; explicit {', '.join(kept)} kept" if kept else "") + f" (resolved: {cfg.out}/config.json)")  # fmt: skip
            with progress() as bar:
                result = train_grpo(cfg, bar)
        except (ValueError, FileNotFoundError, ImportError) as exc:
            fail(str(exc))
        if not result["main_process"]:
            return  # the main process reports
        history = result["history"]
        if history:
            first = sum(h["reward"] for h in history[:10]) / len(history[:10])
            last = sum(h["reward"] for h in history[-10:]) / len(history[-10:])
            console.print(
                f"grpo: {result['steps']} steps; mean reward first 10 {first:.3f} -> last 10 {last:.3f}"
            )
        console.print(f"checkpoint {result['final_checkpoint']}")
        if "eval" in result:
            console.print(f"held-out: {json.dumps({k: round(v, 3) for k, v in result['eval'].items()})}")

    command(train_app, "rl", grpo_flags, run_rl, extra=[
        *EVAL_OPTIONS,
        option("preset", str | None, None, "--preset",
               help="tvg_r1: TVG-R1's published settings, applied first; explicit flags win."),
    ], help="GRPO on the ground truth with the grounding rewards.")  # fmt: skip
