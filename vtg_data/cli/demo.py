"""``vtg-data demo``: every stage through the command line itself, on the synthetic corpus, then
the whole recipe (a biased cold start fixed by RL on the ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vtg_data.cli.common import console, out, progress

# The demo's frames: small, so the tiny model runs in seconds on a CPU.
FRAMES = ["--fps", "1", "--max-frames", "16", "--min-pixels", str(28 * 28), "--max-pixels", str(112 * 112)]


def register(app: typer.Typer) -> None:
    def run(*args: object) -> None:
        """One ``vtg-data`` command, as a user would type it."""
        typer.main.get_command(app).main([str(a) for a in args], standalone_mode=False)

    @app.command()
    def demo(
        root: Path = typer.Option(Path("demo-output"), "--root", help="Where the demo writes everything."),
        n_videos: int = typer.Option(8, "--n-videos"),
        seed: int = typer.Option(0, "--seed"),
        recipe: bool = typer.Option(
            True, "--recipe/--no-recipe", help="Also run the full SFT -> RL recipe (about 8 min on 2 cores)."
        ),
        threads: int = typer.Option(
            2, "--threads", help="torch threads: the order of float sums; the documented figures used 2."
        ),
    ) -> None:
        """Run every stage on the synthetic corpus (CPU, minutes), then the whole recipe: a biased cold
        start fixed by RL on the ground truth."""
        import polars as pl

        from vtg_data.grounding.baselines import prior_windows, write_predictions

        console.print(f"[bold]1. synthetic corpus[/bold] -> {root}")
        run("download", "synthetic", "--root", root, "--n-videos", n_videos, "--seed", seed)
        normalized = root / "normalized" / "synthetic"
        console.print("[bold]2. statistics[/bold]")
        run("stats", normalized)
        console.print("[bold]3. moment-prior baseline predictions on the test split, scored[/bold]")
        predictions = write_predictions(
            prior_windows(
                pl.read_parquet(normalized / "train.parquet"), pl.read_parquet(normalized / "test.parquet")
            ),
            root / "eval" / "prior_predictions.jsonl",
        )
        run(
            "eval",
            "--predictions",
            predictions,
            "--gt",
            normalized / "test.parquet",
            "--out",
            root / "eval" / "metrics.json",
        )
        console.print("[bold]4. the tiny offline model[/bold]")
        model_dir = root / "models" / "tiny-qwen2.5-vl"
        if not (model_dir / "config.json").is_file():
            run("make-tiny-model", model_dir)
        console.print("[bold]5. model evaluation: inference with the hf backend, then scoring[/bold]")
        run("eval", "--model", model_dir, "--data", normalized / "test.parquet", "--out", root / "eval" / "tiny",
            *FRAMES, "--max-tokens", 32, "--bootstrap", 200)  # fmt: skip
        console.print(
            "[bold]6. cold-start set: a teacher that saw the annotation writes traces, filters, rewrite[/bold]"
        )
        run("build", "coldstart", "--data", normalized / "train.parquet", "--out", root / "coldstart",
            "--teacher-model", "gt-template-teacher", "--teacher-backend", "template", "--teacher-sees-gt", "--k", 2,
            "--rewrite-model", "template-rewriter", "--rewrite-backend", "template", "--shards", 2)  # fmt: skip
        console.print("[bold]7. difficulty: k rollouts of the tiny model on the cold-start pool[/bold]")
        run("score-difficulty", "--data", root / "coldstart" / "data", "--model", model_dir, "--out", root / "difficulty",
            "-k", 4, "--max-tokens", 32, *FRAMES, "--shards", 2, "--video-root", root / "videos")  # fmt: skip
        console.print("[bold]8. RL set: difficulty bins from the scores[/bold]")
        run("build", "rl", "--scores", root / "difficulty", "--out", root / "rl", "--policy", "bins")
        console.print(
            "[bold]9. publishing: hub-layout folders with cards, read back with load_dataset[/bold]"
        )
        for builder, source in (("tvg-coldstart", root / "coldstart"), ("tvg-rl", root / "rl")):
            run("push-to-hub", builder, "--input", source, "--repo", f"vtg-data-demo/{builder}", "--version", "0.1.0",
                "--dry-run", "--out", root / "hub" / builder, "--videos", "embed", "--video-root", root / "videos")  # fmt: skip
        runs = [root / "coldstart", root / "difficulty", root / "rl", root / "eval" / "tiny"]
        if not recipe:
            run("report", *runs, "--out", root / "report.html")
            return
        import torch

        from vtg_data.recipe import RecipeConfig, run_recipe

        torch.set_num_threads(threads)  # another count sums floats in another order (README: reproducibility)
        console.print(
            "[bold]10. the recipe: simulated biased teacher -> cold start -> SFT -> difficulty -> RL set -> GRPO[/bold]"
        )
        with progress() as bar:
            result = run_recipe(
                RecipeConfig(root=root / "recipe", seed=seed), say=console.print, progress=bar
            )
        videos = next(iter(result["gains"].values()))["queries"]
        table = Table(title=f"held-out mIoU ({videos} test videos)")
        table.add_column("predictor")
        table.add_column("mIoU", justify="right")
        for name, value in result["held_out_mIoU"].items():
            table.add_row(name, f"{value:.3f}")
        out.print(table)
        funnel = result["coldstart_funnel"]
        console.print(f"cold start: {funnel['in']} teacher traces -> {funnel['out']} accepted; "
                      f"GRPO mean reward {result['rl_reward_first10']:.3f} (first 10 steps) -> {result['rl_reward_last10']:.3f} (last 10)")  # fmt: skip
        for name, gain in result["gains"].items():
            console.print(f"SFT + GRPO {name}: {gain['gain']:+.3f} held-out mIoU (95% interval {gain['lo']:+.3f} to "
                          f"{gain['hi']:+.3f} over the {gain['queries']} videos)")  # fmt: skip
        console.print(
            "benchmarks/rl_fixes_biased_coldstart.py repeats the recipe over seeds (benchmarks/RESULTS.md)"
        )
        console.print("[bold]11. the report: every run above on one page[/bold]")
        run("report", *runs, root / "recipe" / "coldstart", root / "recipe" / "sft", root / "recipe" / "grpo",
            "--out", root / "report.html")  # fmt: skip
