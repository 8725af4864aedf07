"""Publishing: ``push-to-hub`` (options from ``HubBuildConfig``) and ``export``."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import typer
from rich.table import Table

from vtg_data.cli.common import console, fail, out
from vtg_data.cli.options import Group, build, command, explicit, flags, option
from vtg_data.hub.layout import HubBuildConfig

HUB = Group(
    HubBuildConfig,
    skip={
        "builder": "the positional BUILDER argument",
        "out": "--out (a temporary folder unless --dry-run)",
        "previous_changelog": "read from the repo's current card (or the --out folder's)",
    },
    rename={"inputs": "input"},
)


def register(app: typer.Typer) -> None:
    hub_flags = flags(HUB)

    def run_push(ctx: typer.Context, values: dict) -> None:
        from vtg_data.hub.layout import HubBuildError, build_hub_folder, changelog_of
        from vtg_data.hub.publish import PublishError, publish_folder, remote_card

        builder, out_dir, dry_run = values["builder"], values["out_dir"], values["dry_run"]
        if dry_run and out_dir is None:
            fail("--dry-run needs --out DIR to write the folder to")
        local_card = out_dir / "README.md" if out_dir is not None else None
        previous = changelog_of(remote_card(values["repo"]) if not dry_run else None) or changelog_of(
            local_card.read_text() if local_card is not None and local_card.is_file() else None
        )
        with tempfile.TemporaryDirectory() as scratch:
            try:
                cfg = build(HubBuildConfig, hub_flags, values, explicit(ctx, values),
                            fixed={"builder": builder, "out": out_dir or Path(scratch) / "dataset",
                                   "previous_changelog": tuple(previous)})  # fmt: skip
                folder = build_hub_folder(cfg)
            except (HubBuildError, ValueError, FileNotFoundError) as exc:
                fail(str(exc))
            table = Table(title=f"{cfg.repo} v{cfg.version} ({builder})")
            for column in ("config", "split", "rows"):
                table.add_column(column)
            for config, splits in folder.configs.items():
                for split, rows in splits.items():
                    table.add_row(config, split, str(rows))
            out.print(table)
            console.print(f"folder: {folder.path} ({len(folder.files)} files; load_dataset read it back)")
            if dry_run:
                return
            try:
                result = publish_folder(folder.path, cfg.repo, cfg.version, private=values["private"])
            except PublishError as exc:
                fail(str(exc))
            except Exception as exc:  # network and hub errors: say what failed, never the token
                fail(f"upload to {cfg.repo} failed: {type(exc).__name__}: {exc}; rerun to resume")
        console.print(f"uploaded {len(result.uploaded)} file(s), {len(result.unchanged)} unchanged, "
                      f"{len(result.deleted)} deleted, in {result.commits} commit(s); tagged {result.tag} at {result.commit[:12]}")  # fmt: skip

    builder = inspect.Parameter("builder", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                default=typer.Argument(..., help="tvg-coldstart | tvg-rl | tvg-bench"))  # fmt: skip
    command(app, "push-to-hub", hub_flags, run_push, extra=[
        builder,
        option("out_dir", Path | None, None, "--out", help="Where to build the hub-layout folder."),
        option("private", bool, False, "--private", help="Create the repo private."),
        option("dry_run", bool, False, "--dry-run", help="Build and check the folder, upload nothing."),
    ], help="Build the hub-layout folder (Parquet shards + card), check it loads, upload, tag vX.Y.Z.")  # fmt: skip
    app.command("export")(export_command)


def export_command(
    fmt: str = typer.Option(..., "--format", help="easyr1 | tvg-r1 | trl | llamafactory | lmms-eval"),
    source: Path = typer.Option(..., "--input", help="A run folder (coldstart, rl) or normalized table(s)."),
    out_file: Path = typer.Option(
        ..., "--out", help="Data file: JSON lines, or one JSON list if it ends in .json."
    ),
    video_root: Path = typer.Option(..., "--video-root", help="The data root's videos/ folder."),
    prompt: str = typer.Option("tvg_r1_think", "--prompt"),
    reward: str = typer.Option(
        "tvg_r1", "--reward", help="Reward preset of the reward files written beside."
    ),
) -> None:
    """Write a table in the format another trainer or evaluator reads, and what that tool needs beside it."""
    from vtg_data.hub.export import export

    try:
        result = export(source, fmt, out_file, video_root, prompt, reward)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"wrote {result.rows} records to {result.out}")
    for path in result.files[1:]:
        console.print(f"  {path}")
    console.print(f"launch: {result.manifest['launch']}", soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
