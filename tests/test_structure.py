"""Guards of the package's shape: every config field has a flag (or a stated reason why not), a
preset never overrides an explicit flag, and no two modules import each other, directly or round
a longer loop (imports inside functions count: they are imports all the same)."""

from __future__ import annotations

import ast
import dataclasses
import json
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.cli import build as build_cli
from vtg_data.cli import data as data_cli
from vtg_data.cli import evaluate as evaluate_cli
from vtg_data.cli import publish as publish_cli
from vtg_data.cli import train as train_cli
from vtg_data.cli.options import _plain, flags

PACKAGE = Path(__file__).resolve().parents[1] / "vtg_data"

# command path -> the groups its options are generated from
COMMANDS = {
    ("download",): [data_cli.DOWNLOAD],
    ("eval",): [evaluate_cli.MODEL_EVAL, evaluate_cli.SCORE_FILE],
    ("build", "coldstart"): [build_cli.COLDSTART],
    ("score-difficulty",): [build_cli.DIFFICULTY],
    ("build", "rl"): [build_cli.RLSET],
    ("push-to-hub",): [publish_cli.HUB],
    ("train", "sft"): [train_cli.SFT],
    ("train", "rl"): [train_cli.GRPO],
}


def field_paths(cls: type, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    hints = typing.get_type_hints(cls)
    paths = []
    for field in dataclasses.fields(cls):
        nested, _ = _plain(hints[field.name])
        if dataclasses.is_dataclass(nested):
            paths += field_paths(nested, (*at, field.name))
        else:
            paths.append((*at, field.name))
    return paths


def click_command(path: tuple[str, ...]):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_config_field_has_a_flag_or_a_stated_reason(path):
    params = {p.name for p in click_command(path).params}
    for group in COMMANDS[path]:
        flagged = {f.path: f.name for f in flags(group)}
        for field in field_paths(group.cls):
            dotted = ".".join(field)
            reason = group.skip.get(dotted) or (group.skip.get(field[0]) if len(field) == 1 else None)
            reason = reason or group.skip.get(field[0])
            if field in flagged:
                assert flagged[field] in params, f"{' '.join(path)}: {dotted} has no option"
            else:
                assert reason and reason.strip(), (
                    f"{' '.join(path)}: {dotted} is neither a flag nor explained"
                )


def test_a_preset_never_overrides_an_explicit_flag(synthetic_root, tiny_model, tmp_path):
    run = tmp_path / "rl"
    result = CliRunner().invoke(app, [
        "train", "rl", "--model", str(tiny_model), "--data", str(synthetic_root / "normalized/synthetic/train.parquet"),
        "--video-root", str(synthetic_root / "videos"), "--out", str(run), "--preset", "tvg_r1", "--fps", "1",
        "--lr", "3e-4", "--k", "2", "--max-frames", "8", "--steps", "1", "--prompts-per-step", "1",
        "--max-tokens", "4", "--num-workers", "0", "--prompt", "compact", "--no-save-final",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["lr"], config["k"], config["policy"]["fps"], config["policy"]["max_frames"]) == (
        3e-4,
        2,
        1.0,
        8,
    )
    # what was not given comes from the preset
    assert config["entropy"] == 1e-3 and config["policy"]["total_pixels"] == 2048 * 28 * 28
    assert "explicit --fps, --k, --lr, --max-frames kept" in " ".join(result.output.split())


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports, at any depth of its code."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vtg_data"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vtg_data"))
    return found


def test_no_module_imports_itself_round_a_loop():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }
    # a package's __init__ that only hands names on is not a module of its own for this purpose
    state: dict[str, int] = {}
    loops = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                loops.append(trail[trail.index(target) :] + [target] if target in trail else [name, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not loops, "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)
