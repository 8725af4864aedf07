"""Seeing the data: ``inspect`` (one picture per sample) and ``report`` (one page per set of runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from vtg_data.cli.common import console, fail


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_command(
        source: Path = typer.Argument(
            ..., help="A normalized table, or a cold-start, difficulty, RL or eval run folder."
        ),
        out: Path = typer.Option(..., "--out", help="Folder for the pictures (one PNG per sample)."),
        uid: list[str] | None = typer.Option(None, "--uid", help="A sample to draw (repeatable)."),
        sample: int = typer.Option(4, "--sample", help="Without --uid: this many samples drawn at random."),
        seed: int = typer.Option(0, "--seed", help="Seed of the random draw."),
        video_root: Path | None = typer.Option(
            None, "--video-root", help="The data root's videos/ folder (default: found from the run)."
        ),
        frames: int = typer.Option(8, "--frames", help="Frames in the strip."),
    ) -> None:
        """Frames at their true times and every window on one time axis: ground truth, annotators,
        the teacher, the rollouts with their IoUs or the model's prediction, and the row's flags."""
        from vtg_data.report.inspect import inspect

        try:
            paths = inspect(
                source, out, uids=uid, sample=sample, seed=seed, video_root=video_root, frames=frames
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        for path in paths:
            console.print(f"wrote {path}")

    @app.command("report")
    def report_command(
        runs: list[Path] = typer.Argument(
            ...,
            help="Run folders (cold-start, difficulty, RL, eval, train), tables, or the JSONL of an "
            "ablation (benchmarks/paper_findings.py --out).",
        ),
        out: Path = typer.Option(Path("report.html"), "--out", help="The page to write."),
        video_root: Path | None = typer.Option(
            None, "--video-root", help="The data root's videos/ folder (default: found from each run)."
        ),
        title: str | None = typer.Option(None, "--title"),
    ) -> None:
        """One self-contained HTML page (no server, no network) for a set of runs."""
        from vtg_data.report.page import report

        try:
            path = report(runs, out, video_root=video_root, title=title)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        console.print(f"report: {path.resolve()} (open it in a browser)")
