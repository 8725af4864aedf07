"""Data commands: ``download`` (options from ``DownloadConfig``), ``stats``, ``check-leakage``,
``make-tiny-model``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from vtg_data.cli.common import console, fail, out, progress
from vtg_data.cli.options import Group, build, command, explicit, flags, option
from vtg_data.corpora import REGISTRY, UnknownCorpus
from vtg_data.fetch import FetchError
from vtg_data.stages.download import DownloadConfig

DOWNLOAD = Group(
    DownloadConfig,
    skip={"corpus": "the positional CORPUS argument", "root": "given as --root (required unless --list)"},
    rename={"splits": "split"},
    prefix={},
    spell={"from_dir": "--from"},
)


def register(app: typer.Typer) -> None:
    download_flags = flags(DOWNLOAD)

    def run_download(ctx: typer.Context, values: dict) -> None:
        from vtg_data.schema import ValidationFailed
        from vtg_data.stages.download import download

        if values["list_corpora"]:
            print_catalogue()
            return
        corpus, root = values["corpus"], values["root"]
        if corpus is None or root is None:
            fail("give a CORPUS and --root (or --list to see the corpora)")
        try:
            cfg = build(
                DownloadConfig,
                download_flags,
                values,
                explicit(ctx, values),
                fixed={"corpus": corpus, "root": root},
            )
            with progress() as bar:
                result = download(cfg, bar)
        except (UnknownCorpus, ValueError, FetchError, ValidationFailed) as exc:
            fail(str(exc))
        table = Table(title=f"{corpus} -> {result.out_dir}")
        for column in ("split", "queries", "videos", "missing", "corrupt", "flags", "state"):
            table.add_column(
                column, justify="right" if column in {"queries", "videos", "missing", "corrupt"} else "left"
            )
        for s in result.splits:
            flag_counts = ", ".join(f"{k} {v}" for k, v in s.flags.items()) or "-"
            state = "[red]failed[/red]" if s.error else ("up to date" if s.up_to_date else "written")
            table.add_row(s.split, str(s.queries), str(s.videos), str(s.videos_missing), str(s.videos_corrupt),
                          flag_counts, state)  # fmt: skip
        out.print(table)
        from vtg_data.stats import video_facts

        print_video_facts(video_facts([result.out_dir]))
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        if result.errors:
            fail("\n".join(result.errors))

    import inspect

    corpus = inspect.Parameter("corpus", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                               default=typer.Argument(None, help=f"One of: {', '.join(sorted(REGISTRY))}."))  # fmt: skip
    command(app, "download", download_flags, run_download, help=(
        "Get a corpus's native files, validate them and write normalized Parquet tables."), extra=[
        corpus,
        option("root", Path | None, None, "--root", help="Data root; files go to raw/, videos/, normalized/ below it."),
        option("list_corpora", bool, False, "--list", help="List every corpus: task, splits, videos, mirrors, licence."),
    ])  # fmt: skip

    app.command()(stats)
    app.command("check-leakage")(check_leakage_command)
    app.command("make-tiny-model")(make_tiny_model_command)


def print_catalogue() -> None:
    from vtg_data.fetch.catalogue import catalogue

    table = Table(title="corpora")
    for column in ("corpus", "task", "splits", "benchmark splits", "videos", "--mirror", "licence"):
        table.add_column(column, overflow="fold")
    for entry in catalogue():
        benchmarks = ", ".join(f"{split}: {tag}" for split, tag in entry["benchmarks"].items()) or "-"
        table.add_row(entry["corpus"], entry["task"], ", ".join(entry["splits"]), benchmarks, entry["videos"],
                      ", ".join(entry["mirrors"]) or "-", entry["licence"])  # fmt: skip
    out.print(table)


def stats(
    path: Path = typer.Argument(..., help="A normalized table, or a folder of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Counts per source and split, duration and window-length distributions, flags, missing videos."""
    from vtg_data.stats import compute_stats

    try:
        result = compute_stats(path)
    except FileNotFoundError as exc:
        fail(str(exc))
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
    flag_table = Table(title="flags")
    flag_table.add_column("flag")
    flag_table.add_column("rows", justify="right")
    for name, count in result["flags"].items():
        flag_table.add_row(name, str(count))
    out.print(flag_table)
    out.print(
        f"videos: {result['videos']}  missing: {result['videos_missing']}  corrupt: {result['videos_corrupt']}"
    )
    print_video_facts(result["video_files"])


def print_video_facts(rows: list[dict]) -> None:
    """The video files per corpus: status, codecs, containers, rotated / offset / variable-rate counts."""
    if not rows:
        return
    table = Table(title="video files (videos.parquet)")
    for column in (
        "corpus",
        "ok / missing / corrupt",
        "codecs",
        "containers",
        "rotated",
        "start > 0",
        "variable rate",
    ):
        table.add_column(
            column, justify="right" if column in {"rotated", "start > 0", "variable rate"} else "left"
        )
    for row in rows:
        status = " / ".join(str(row["status"].get(k, 0)) for k in ("ok", "missing", "corrupt"))
        table.add_row(row["corpus"], status, ", ".join(f"{k} {v}" for k, v in row["codecs"].items()) or "-",
                      ", ".join(f"{k} {v}" for k, v in row["containers"].items()) or "-", str(row["rotated"]),
                      str(row["offset_start"]), str(row["variable_rate"]))  # fmt: skip
    out.print(table)


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
        fail(str(exc))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table(title=f"leakage: {report.rows_video_overlap} of {report.train_rows} training rows share a video "
                            f"with the benchmark ({report.shared_videos} videos; {report.rows_query_overlap} also the query)")  # fmt: skip
        for column in ("train source", "bench source", "benchmarks", "rows", "videos"):
            table.add_column(column)
        for pair in report.by_pair:
            table.add_row(pair["train_source"], pair["bench_source"], ", ".join(pair["bench_tags"]), str(pair["rows"]),
                          str(pair["videos"]))  # fmt: skip
        out.print(table)
        if report.rows_benchmark_tagged:
            out.print(
                f"{report.rows_benchmark_tagged} training rows are benchmark items themselves (tagged in 'benchmarks')"
            )
    if drop is not None:
        for path in write_kept(report, drop):
            console.print(f"wrote {path}")


def make_tiny_model_command(
    out_dir: Path = typer.Argument(..., help="Folder to write the model, tokenizer and processor to."),
    seed: int = typer.Option(0, "--seed"),
    family: str = typer.Option("qwen2.5-vl", "--family", help="qwen2.5-vl | qwen3-vl"),
    size: str | None = typer.Option(
        None,
        "--size",
        help="xs | s | m: the learning shapes (s: the demo's and the tests' learnable setup); default: the smallest.",
    ),
) -> None:
    """Write a random-weight Qwen2.5-VL (or Qwen3-VL) model built offline (for tests and demos)."""
    from vtg_data.lvlm.tiny import make_tiny_model

    try:
        path = make_tiny_model(out_dir, seed=seed, family=family, size=size)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"wrote {path}")
