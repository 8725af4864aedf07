"""The ``vtg-data`` command line: argument parsing and printing only; the work is in the stages."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vtg_data.corpora import REGISTRY, UnknownCorpus
from vtg_data.corpora.synthetic import SyntheticConfig
from vtg_data.fetch import FetchError

app = typer.Typer(
    help="Video temporal grounding data: download, build, score, publish, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def download(
    corpus: str = typer.Argument(..., help=f"One of: {', '.join(sorted(REGISTRY))}."),
    root: Path = typer.Option(
        ..., "--root", help="Data root; files go to raw/, videos/, normalized/ below it."
    ),
    split: list[str] | None = typer.Option(None, "--split", help="Split(s) to process (default: all)."),
    from_dir: Path | None = typer.Option(
        None, "--from", help="Folder holding the native files under their official names."
    ),
    videos: bool = typer.Option(False, "--videos", help="Also download and extract the videos."),
    strict: bool = typer.Option(False, "--strict", help="Treat every repaired window as an error."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Check known SHA-256 sums of native files."
    ),
    didemo_consolidation: str = typer.Option(
        "mode", help="DiDeMo: how annotator windows become one (mode|mean)."
    ),
    n_videos: int = typer.Option(8, "--n-videos", help="synthetic: number of videos."),
    seed: int = typer.Option(0, "--seed", help="synthetic: random seed."),
    min_duration: float = typer.Option(6.0, help="synthetic: shortest video, seconds."),
    max_duration: float = typer.Option(40.0, help="synthetic: longest video, seconds."),
) -> None:
    """Get a corpus's native files, validate them and write normalized Parquet tables."""
    from vtg_data.schema import ValidationFailed
    from vtg_data.stages.download import DownloadConfig
    from vtg_data.stages.download import download as run_download

    try:
        cfg = DownloadConfig(
            corpus=corpus,
            root=root,
            splits=tuple(split or ()),
            from_dir=from_dir,
            videos=videos,
            strict=strict,
            verify=verify,
            didemo_consolidation=didemo_consolidation,
            synthetic=SyntheticConfig(
                n_videos=n_videos, seed=seed, min_duration=min_duration, max_duration=max_duration
            ),
        )
        with _progress() as progress:
            result = run_download(cfg, progress)
    except (UnknownCorpus, ValueError, FetchError, ValidationFailed) as exc:
        _fail(str(exc))
    table = Table(title=f"{corpus} -> {result.out_dir}")
    for column in ("split", "queries", "videos", "missing", "corrupt", "flags", "state"):
        table.add_column(
            column, justify="right" if column in {"queries", "videos", "missing", "corrupt"} else "left"
        )
    for s in result.splits:
        flags = ", ".join(f"{k} {v}" for k, v in s.flags.items()) or "-"
        state = "[red]failed[/red]" if s.error else ("up to date" if s.up_to_date else "written")
        table.add_row(
            s.split, str(s.queries), str(s.videos), str(s.videos_missing), str(s.videos_corrupt), flags, state
        )
    out.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if result.errors:
        _fail("\n".join(result.errors))


@app.command()
def stats(
    path: Path = typer.Argument(..., help="A normalized table, or a folder of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Counts per source and split, duration and window-length distributions, flags, missing videos."""
    from vtg_data.stats import compute_stats

    try:
        result = compute_stats(path)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if as_json:
        out.print_json(json.dumps(result))
        return
    groups = Table(title="queries")
    for column in ("source", "split", "queries", "videos"):
        groups.add_column(column)
    for row in result["groups"]:
        groups.add_row(row["source"], row["split"], str(row["queries"]), str(row["videos"]))
    out.print(groups)
    dist = Table(title="distributions (seconds; fraction of the video)")
    dist.add_column("what")
    for column in ("min", "p25", "median", "p75", "max", "mean"):
        dist.add_column(column, justify="right")
    for name in ("video_duration", "window_length", "window_fraction"):
        values = result[name]
        dist.add_row(
            name,
            *(f"{values.get(k, float('nan')):.2f}" for k in ("min", "p25", "median", "p75", "max", "mean")),
        )
    out.print(dist)
    flags = Table(title="flags")
    flags.add_column("flag")
    flags.add_column("rows", justify="right")
    for name, count in result["flags"].items():
        flags.add_row(name, str(count))
    out.print(flags)
    out.print(
        f"videos: {result['videos']}  missing: {result['videos_missing']}  corrupt: {result['videos_corrupt']}"
    )


@app.command("eval")
def eval_command(
    predictions: Path = typer.Option(
        ..., "--predictions", help="JSONL: uid + text|windows, or qid + pred_relevant_windows."
    ),
    gt: Path = typer.Option(..., "--gt", help="Normalized Parquet table(s), or a QVHighlights JSONL."),
    fmt: str = typer.Option("auto", "--format", help="auto | vtg | qvhighlights"),
    parse_mode: str = typer.Option("tolerant", "--parse-mode", help="tolerant | strict (TVG-R1's rule)"),
    hit_rule: str = typer.Option(">=", "--hit-rule", help="'>=' or '>' (IoU against a threshold)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Resamples for the 95% intervals (0: none)."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Score only queries that have a prediction."
    ),
    out_path: Path | None = typer.Option(None, "--out", help="Where to write metrics.json."),
) -> None:
    """Score predictions: R1@{0.1..0.9}, mIoU, IoP (or QVHighlights R1/mAP), printed as a markdown table."""
    from vtg_data.evaluate import EvalConfig, EvalInputError, evaluate, markdown_table, write_metrics

    try:
        result = evaluate(EvalConfig(predictions, gt, fmt, parse_mode, hit_rule, bootstrap=bootstrap,
                                     allow_missing=allow_missing))  # fmt: skip
    except (EvalInputError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    print(markdown_table(result))
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    console.print(
        f"[dim]{counts}; parser {result.card['parse_mode']}, hit rule {result.card['hit_rule']}[/dim]"
    )
    if out_path is not None:
        write_metrics(result, out_path)


@app.command("check-leakage")
def check_leakage_command(
    train: list[Path] = typer.Option(..., "--train", help="Training table(s) or folder(s)."),
    bench: list[Path] = typer.Option(..., "--bench", help="Benchmark table(s) or folder(s)."),
    drop: Path | None = typer.Option(
        None, "--drop", help="Write the training tables without overlapping videos here."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Overlap between training and benchmark tables, by video and by (video, query)."""
    from vtg_data.leakage import check_leakage, write_kept

    try:
        report = check_leakage(list(train), list(bench))
    except FileNotFoundError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table(title=f"leakage: {report.rows_video_overlap} of {report.train_rows} training rows share a video "
                            f"with the benchmark ({report.shared_videos} videos; {report.rows_query_overlap} also the query)")  # fmt: skip
        for column in ("train source", "bench source", "rows", "videos"):
            table.add_column(column)
        for pair in report.by_pair:
            table.add_row(pair["train_source"], pair["bench_source"], str(pair["rows"]), str(pair["videos"]))
        out.print(table)
    if drop is not None:
        for path in write_kept(report, drop):
            console.print(f"wrote {path}")


@app.command("make-tiny-model")
def make_tiny_model_command(
    out_dir: Path = typer.Argument(..., help="Folder to write the model, tokenizer and processor to."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a random-weight Qwen2.5-VL-architecture model built offline (for tests and demos)."""
    from vtg_data.lvlm.tiny import make_tiny_model

    path = make_tiny_model(out_dir, seed=seed)
    console.print(f"wrote {path}")


@app.command()
def demo(
    root: Path = typer.Option(Path("demo-output"), "--root", help="Where the demo writes everything."),
    n_videos: int = typer.Option(8, "--n-videos"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run every stage that exists on the synthetic corpus (CPU, minutes)."""
    import polars as pl

    from vtg_data.grounding.baselines import prior_windows, write_predictions

    console.print(f"[bold]1. synthetic corpus[/bold] -> {root}")
    download(corpus="synthetic", root=root, split=None, from_dir=None, videos=False, strict=False, verify=True,
             didemo_consolidation="mode", n_videos=n_videos, seed=seed, min_duration=6.0, max_duration=40.0)  # fmt: skip
    normalized = root / "normalized" / "synthetic"
    console.print("[bold]2. statistics[/bold]")
    stats(path=normalized, as_json=False)
    console.print("[bold]3. moment-prior baseline predictions on the test split[/bold]")
    predictions = write_predictions(
        prior_windows(
            pl.read_parquet(normalized / "train.parquet"), pl.read_parquet(normalized / "test.parquet")
        ),
        root / "eval" / "prior_predictions.jsonl",
    )
    console.print(f"wrote {predictions}")
    console.print("[bold]4. scoring[/bold]")
    eval_command(predictions=predictions, gt=normalized / "test.parquet", fmt="auto", parse_mode="tolerant",
                 hit_rule=">=", bootstrap=1000, allow_missing=False, out_path=root / "eval" / "metrics.json")  # fmt: skip
    console.print(f"metrics: {root / 'eval' / 'metrics.json'}")


if __name__ == "__main__":
    app()
