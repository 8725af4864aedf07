"""Command-line options generated from the stages' config dataclasses.

A config dataclass is the single source of its options: every field becomes a flag named after
it (``max_frames`` -> ``--max-frames``), with the field's default (stated once, in the dataclass)
and its help (the comment beside the field, or the text in ``HELP``). Nested configs
(``SamplingPolicy``, ``GenerationParams``, ``RuleOptions``, ``TrainData``) are flattened, with a
prefix where two would clash. The command receives the flags' values, and ``build`` puts the config
back together: the dataclass defaults, then a preset's values, then the flags the user actually
gave (a preset never overrides an explicit flag).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

# Help for fields whose dataclass has no comment beside them, by field name.
HELP: dict[str, str] = {
    "data": "Table(s) or folder(s) to read.",
    "out": "Run folder.",
    "model": "Model path or hub id.",
    "prompt": "Prompt template name (vtg_data.grounding.prompts).",
    "video_root": "The data root's videos/ folder (a row's video: <video-root>/<source>/<video_path>).",
    "limit": "Only the first N rows.",
    "seed": "Random seed (sampling, order).",
    "fps": "Frames per second to sample.",
    "min_frames": "Fewest frames per video.",
    "max_frames": "Most frames per video.",
    "min_pixels": "Smallest frame, in pixels.",
    "max_pixels": "Per-frame pixel budget.",
    "n": "Samples per prompt.",
    "temperature": "Sampling temperature (0: greedy).",
    "top_p": "Nucleus sampling mass.",
    "top_k": "Sample from the k likeliest tokens (0: off). Sent explicitly: a checkpoint's own default is never used.",
    "min_p": "Drop tokens below this share of the likeliest one's probability (0: off).",
    "repetition_penalty": "Penalty on tokens already in the prompt or answer (1: none).",
    "max_tokens": "New tokens per answer.",
    "k": "Rollouts per sample.",
    "shards": "Output shards (the unit of resuming).",
    "steps": "Optimizer steps.",
    "lr": "Peak learning rate.",
    "warmup": "Warm-up steps.",
    "lr_floor": "Learning rate at the last step, as a share of the peak.",
    "batch_size": "Examples per optimizer step (all processes together).",
    "save_every": "Checkpoint every N steps (0: only at the end).",
    "reward": "Reward preset (vtg_data.grounding.rewards.PRESETS).",
    "path": "Hub id or local folder (hub layout), or a Parquet table.",
    "revision": "Dataset version tag, e.g. v1.0.0.",
    "config": "Dataset config.",
    "split": "Dataset split.",
    "thresholds": "IoU thresholds of R1@t.",
    "bootstrap": "Resamples for the 95% intervals (0: none).",
    "hit_rule": "'>=' or '>' (IoU against a threshold).",
    "protocol": "vtg-data (default) | tvg_r1 | time_r1 | timelens: a paper's whole scoring convention "
    "(how answers are read, clamping, IoU arithmetic, hit rule), to put a number next to its table.",
    "parse_mode": "tolerant | strict (default: the prompt's own).",
    "weight_decay": "AdamW weight decay.",
    "grad_clip": "Clip the gradient norm to this.",
    "freeze_vision": "Keep the vision tower frozen.",
    "lora_rank": "LoRA rank (0: full fine-tuning; needs the train extra).",
    "gradient_checkpointing": "Recompute activations in the backward pass (less memory).",
    "eval_every": "Held-out evaluation every N steps (0: only at the end).",
    "save_final": "Write a checkpoint at the last step.",
    "eval_max_tokens": "New tokens per held-out answer.",
    "resume": "Continue from the run folder's last checkpoint.",
    "stop_after": "Stop at this step (the schedule still spans --steps).",
    "prompts_per_step": "Prompts per step (all processes together), each with k rollouts.",
    "clip": "PPO clip range of the objective.",
    "entropy": "Entropy bonus coefficient.",
    "scale_by_std": "Divide advantages by the group's reward std.",
    "updates_per_step": "Optimizer updates on each step's rollouts.",
    "vllm_max_model_len": "The vLLM engine's context length (default: the model's).",
    "price_input": "USD per million prompt tokens of the teacher (default: the model's list price, if known).",
    "price_output": "USD per million output tokens (thinking included) of the teacher.",
    "budget": "Stop cleanly (resumable) once the teacher's answers have cost this many USD.",
    "dry_run": "Ask the teacher about the first N samples only, then print the projected tokens, cost "
    "and time of the whole table (the answers are kept: the full run does not pay for them again).",
    "vllm_options": "More vLLM engine arguments, a JSON object (e.g. '{\"enforce_eager\": true}').",
    "vllm_check_sync": "first | every | off: after a weight sync, score the engine's greedy answer to one "
    "prompt with the trainer's model; a difference beyond --vllm-sync-tolerance stops the run.",
    "vllm_sync_tolerance": "Largest log-probability difference between engine and trainer after a sync.",
    "greedy": "Also record one greedy answer's IoU.",
    "engine": "local | ray (one model replica per worker).",
    "workers": "ray: model replicas.",
    "gpus_per_worker": "ray: GPUs per replica.",
    "backend": "hf | openai | vllm | gemini",
    "state_duration": "Tell the model the video's length in the prompt.",
    "state_frame_times": "List the sampled frames' times in the prompt.",
}


@dataclass(frozen=True)
class Flag:
    """One option: where its value goes in the config (``path``) and how it is spelled."""

    path: tuple[str, ...]
    name: str  # the command function's parameter
    option: str  # --spelling
    annotation: Any
    default: Any  # ... when required
    help: str


@dataclass(frozen=True)
class Group:
    """The flags of a config dataclass (nested ones flattened).

    ``at``: where the config sits in the command's config (() for the config itself);
    ``prefix``: added to the flag names of nested configs, by field name (clashes);
    ``skip``: fields set by the command itself, with the reason, never by a flag;
    ``rename``: a field's flag name where the field name would read badly on the command line.
    """

    cls: type
    at: tuple[str, ...] = ()
    prefix: dict[str, str] = dataclasses.field(default_factory=dict)
    skip: dict[str, str] = dataclasses.field(default_factory=dict)
    rename: dict[str, str] = dataclasses.field(default_factory=dict)
    defaults: Any = None  # an instance whose values are the defaults (else the dataclass's)
    # flag name -> "--spelling" (or "--long|-s"), where it differs from the name
    spell: dict[str, str] = dataclasses.field(default_factory=dict)
    # help by field path ("options.iou_min") or name, where the field's own comment does not fit
    help: dict[str, str] = dataclasses.field(default_factory=dict)


def _comments(cls: type) -> dict[str, str]:
    """``name -> comment`` for the ``name: type = default  # comment`` lines of a dataclass and
    the dataclasses it inherits from (the nearest definition wins)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            match = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
            if match and "fmt:" not in match.group(2):
                text = match.group(2).strip()
                found[match.group(1)] = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
    return found


def _plain(annotation: Any) -> tuple[Any, bool]:
    """The type Typer gets for a field's type, and whether it may be None."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
        origin = typing.get_origin(annotation)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if item in (int, float):  # numbers as one comma-separated value: --thresholds 0.3,0.5,0.7
            return NumberList(item), optional
        return list[item], optional
    return annotation, optional


class NumberList:
    """A tuple of numbers given as one comma-separated option value."""

    def __init__(self, item: type):
        self.item = item

    def parse(self, text: str | None) -> tuple | None:
        if text is None:
            return None
        try:
            return tuple(self.item(x) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise ValueError(f"expected comma-separated numbers, got {text!r}") from exc


def _default(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value) and value:
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, tuple):
        return list(value)
    return value


def flags(group: Group) -> list[Flag]:
    """The flags of a group, nested configs flattened, in field order."""
    found: list[Flag] = []
    hints = typing.get_type_hints(group.cls)
    comments = _comments(group.cls)
    base = group.defaults
    for field in dataclasses.fields(group.cls):
        if field.name in group.skip or ".".join((*group.at, field.name)) in group.skip:
            continue
        annotation = hints[field.name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        if base is not None:
            default = getattr(base, field.name)
        nested, _ = _plain(annotation)
        if dataclasses.is_dataclass(nested):
            prefix = group.prefix.get(field.name, "")
            inner = Group(nested, (*group.at, field.name), {}, group.skip, group.rename,
                          default if dataclasses.is_dataclass(default) else None, help=group.help)  # fmt: skip
            for flag in flags(inner):
                name = prefix + flag.name
                found.append(Flag(flag.path, name, _spelling(name, flag.annotation, group.spell), flag.annotation,
                                  flag.default, flag.help))  # fmt: skip
            continue
        plain, optional = _plain(annotation)
        path = ".".join((*group.at, field.name))
        name = group.rename.get(path) or group.rename.get(field.name, field.name)
        if optional and default is not ... and not isinstance(plain, NumberList):
            plain = plain | None
        help_text = (
            comments.get(field.name)
            or HELP.get(field.name)
            or field.name.replace("_", " ").capitalize() + "."
        )
        found.append(Flag((*group.at, field.name), name, _spelling(name, plain, group.spell), plain,
                          _default(default), help_text))  # fmt: skip
    return found


def _spelling(name: str, annotation: Any, spell: dict[str, str]) -> str:
    option = spell.get(name) or "--" + name.replace("_", "-")
    if annotation is bool and "/" not in option:
        option = f"{option}/--no-{option[2:]}"
    return option


def parameters(flag_list: Iterable[Flag]) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                          annotation=str if isinstance(f.annotation, NumberList) else f.annotation,
                          default=typer.Option(f.default, *f.option.split("|"), help=f.help))
        for f in flag_list
    ]  # fmt: skip


def explicit(ctx: typer.Context, names: Iterable[str]) -> set[str]:
    """The parameters the user gave (command line or environment), not left at their default."""
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        # by name: Typer may carry its own copy of click's enum
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            given.add(name)
    return given


def _nested_values(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """A preset's values by field path (a nested dataclass contributes each of its fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[tuple[str, ...], Any] = {}
        for field in dataclasses.fields(value):
            out |= _nested_values(getattr(value, field.name), (*path, field.name))
        return out
    return {path: value}


def build(
    cls: type,
    flag_list: list[Flag],
    values: dict[str, Any],
    given: set[str],
    *,
    preset: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
) -> Any:
    """The config: the flags' values (their defaults are the dataclass's), a preset over the flags
    left at their default, the explicitly given flags over everything; ``fixed`` holds the fields
    the command sets itself (by path string ``"a.b"`` or field name)."""
    chosen: dict[tuple[str, ...], Any] = {}
    for flag in flag_list:
        value = values[flag.name]
        if isinstance(flag.annotation, NumberList):
            value = flag.annotation.parse(value)
        elif isinstance(value, list):
            value = tuple(value)
        chosen[flag.path] = value
    for path, value in _nested_values_preset(preset or {}).items():
        name = next((f.name for f in flag_list if f.path == path), None)
        if name is None or name not in given:
            chosen[path] = value
    for key, value in (fixed or {}).items():
        chosen[tuple(key.split("."))] = value
    return _assemble(cls, chosen)


def _nested_values_preset(preset: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in preset.items():
        out |= _nested_values(value, tuple(key.split(".")))
    return out


def _assemble(cls: type, chosen: dict[tuple[str, ...], Any], at: tuple[str, ...] = ()) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        path = (*at, field.name)
        nested, _ = _plain(hints[field.name])
        if dataclasses.is_dataclass(nested) and any(
            p[: len(path)] == path and len(p) > len(path) for p in chosen
        ):
            kwargs[field.name] = _assemble(nested, chosen, path)
        elif path in chosen:
            kwargs[field.name] = chosen[path]
    return cls(**kwargs)


def command(
    app: typer.Typer,
    name: str,
    flag_list: list[Flag],
    run: Callable[..., None],
    *,
    extra: list[inspect.Parameter] = (),
    help: str = "",
) -> Callable:
    """Register ``run(ctx, values)`` as ``name`` with the generated flags plus ``extra`` ones."""

    def handler(ctx: typer.Context, **values: Any) -> None:
        run(ctx, values)

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
              *extra, *parameters(flag_list)]  # fmt: skip
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{name}: two options share a name: {sorted(n for n in names if names.count(n) > 1)}"
        )
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__doc__ = help
    handler.__name__ = name.replace("-", "_") + "_command"
    app.command(name, help=help)(handler)
    return handler


def option(name: str, annotation: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
    """A hand-written option of a generated command (a backend's address, an output format)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, help=help))  # fmt: skip


def as_path(values: Iterable[Path] | None) -> tuple[Path, ...]:
    return tuple(values or ())
