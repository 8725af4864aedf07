"""What every command module shares: the consoles, the progress display, failing with a message,
and building an inference backend or a frame cache from options."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from vtg_data.cli.options import option

console = Console(stderr=True)
out = Console()


class CountColumn(ProgressColumn):
    """Bytes for a download (a task added with ``unit="bytes"``), done/total for steps and items."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes, self.items = DownloadColumn(), MofNCompleteColumn()

    def render(self, task):
        return (self.bytes if task.fields.get("unit") == "bytes" else self.items).render(task)


class LineProgress:
    """Where long work is when output is not a terminal (CI logs, a piped demo): one line per task
    every 5% of its total, instead of a bar. ``disable`` is true: the trainers, which know their
    loss or reward, print their own lines."""

    disable = True

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        self.tasks[len(self.tasks)] = {
            "description": description,
            "total": total,
            "completed": completed,
            "said": -1,
        }
        return len(self.tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(
        self, task: int, *, completed=None, total=None, advance=None, description=None, **fields
    ) -> None:
        state = self.tasks[task]
        if total is not None:
            state["total"] = total
        if description is not None:
            state["description"] = description
        state["completed"] = completed if completed is not None else state["completed"] + (advance or 0)
        if state["total"]:
            step = int(20 * state["completed"] / state["total"])
            if step > state["said"]:
                state["said"] = step
                console.print(
                    f"{state['description']}: {state['completed']:g}/{state['total']:g}", highlight=False
                )


def progress() -> Progress | LineProgress:
    """A progress bar on the terminal; a line every 5% of each task when output is not one."""
    if not console.is_terminal:
        return LineProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def report_failures(groups: list[dict], *, succeeded: int, total: int, what: str) -> None:
    """Failed rows grouped by reason (count and first message); a run where rows were asked for
    and none succeeded exits non-zero, its outputs (and the reasons) kept."""
    from vtg_data.stages.failures import failure_lines

    if groups:
        failed = sum(g["count"] for g in groups)
        console.print(f"[yellow]{failed} {what} failed[/yellow], by reason:", highlight=False)
        for line in failure_lines(groups):
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if total and not succeeded:
        fail(f"no {what} succeeded ({total} asked); the reasons are above and in the run's manifest")


def frame_cache(folder: Path | None, gib: float):
    """The on-disk frame cache every stage shares (``--frame-cache DIR``), or None."""
    if folder is None:
        return None
    from vtg_data.video import FrameCache

    return FrameCache(folder, max_bytes=int(gib * 2**30))


def backend(kind: str, model: str, *, base_url: str | None = None, decoder: str = "auto", batch_size: int = 4,
            cache=None, concurrency: int = 8, video_mode: str = "frames", family: str | None = None,
            api_fields: str = "full", n_mode: str = "param", vllm_options: str | None = None,
            gemini: dict | None = None, images: dict | None = None):  # fmt: skip
    """A backend by CLI name; ``template`` is the rule-based teacher/rewriter (no model)."""
    if kind == "template":
        from vtg_data.lvlm.templates import template_backend

        return template_backend(model)
    from vtg_data.lvlm import make_backend

    if kind == "hf":
        return make_backend("hf", model, decode_backend=decoder, batch_size=batch_size, frame_cache=cache)
    if kind == "openai":
        return make_backend("openai", model, base_url=base_url, concurrency=concurrency, decode_backend=decoder,
                            frame_cache=cache, video_mode=video_mode, family=family, api_fields=api_fields,
                            n_mode=n_mode, **(images or {}))  # fmt: skip
    if kind == "vllm":
        return make_backend("vllm", model, decode_backend=decoder, frame_cache=cache,
                            engine_options=engine_options(vllm_options))  # fmt: skip
    if kind == "gemini":
        options = {k: v for k, v in (gemini or {}).items() if v is not None}
        return make_backend("gemini", model, base_url=base_url, concurrency=concurrency, n_mode=n_mode,
                            upload_cache=gemini_upload_cache(), **options)  # fmt: skip
    return make_backend(kind, model, decode_backend=decoder, frame_cache=cache)


def gemini_upload_cache() -> Path:
    """Where uploads to the Gemini Files API are remembered between runs (they live 48 h)."""
    import os

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "vtg-data" / "gemini-uploads.json"


def engine_options(text: str | None) -> dict | None:
    """``--vllm-options``: vLLM engine arguments as a JSON object, checked here (not deep inside vLLM)."""
    if not text:
        return None
    import json

    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"--vllm-options is not JSON: {error}") from error
    if not isinstance(options, dict):
        raise typer.BadParameter("--vllm-options must be a JSON object of vLLM engine arguments")
    return options


# Options of the commands that run a model, written once.
BACKEND_OPTIONS: list[inspect.Parameter] = [
    option("base_url", str | None, None, "--base-url",
           help="openai backend: server URL (or OPENAI_BASE_URL); gemini backend: another API endpoint."),
    option("concurrency", int, 8, "--concurrency", help="openai backend: requests in flight at once."),
    option("video_mode", str, "frames", "--video-mode",
           help="openai backend: frames (decode here with the frame options, send the frames as one video: vLLM, "
                "SGLang) | images (the same frames as JPEG images, each after its time: hosted chat APIs) | "
                "data_url | file_url (send the whole file; the server picks the frames)."),
    option("image_detail", str, "auto", "--image-detail", help="images mode: auto | low | high (the provider's image tokens)."),
    option("max_images", int, 50, "--max-images", help="images mode: the provider's limit of images per request."),
    option("over_image_limit", str, "lower", "--over-image-limit",
           help="images mode, more frames planned than --max-images: lower (keep that many, evenly spread; "
                "recorded per answer) | refuse (the request fails, named)."),
    option("model_family", str | None, None, "--model-family",
           help="openai backend: qwen2.5-vl | qwen3-vl | other (frame grid and pixel bounds, and whether the server's "
                "visual tokens can be counted; default: from the model name)."),
    option("api_fields", str, "full", "--api-fields",
           help="openai backend: full (every sampling field: vLLM, SGLang) | standard (OpenAI's own fields only)."),
    option("n_mode", str, "param", "--n-mode",
           help="openai backend: param (n samples in one request) | repeat (n requests, seeds seed + i)."),
    option("vllm_options", str | None, None, "--vllm-options",
           help='vllm backend: engine arguments as JSON, e.g. \'{"max_model_len": 32768, "dtype": "bfloat16"}\'.'),
    option("thinking_budget", int | None, None, "--thinking-budget",
           help="gemini backend: thinking tokens allowed (the model's default otherwise); thoughts are kept."),
    option("media_resolution", str | None, None, "--media-resolution",
           help="gemini backend: low | medium | high (tokens per frame; the model's default otherwise)."),
    option("inline_mib", float, 20.0, "--inline-mib",
           help="gemini backend: send a video inline up to this request size, else through the Files API."),
    option("keep_uploads", bool, False, "--keep-uploads",
           help="gemini backend: keep uploaded videos after the run (reused for 47 h) instead of deleting them."),
    option("decoder", str, "auto", "--decoder",
           help="auto (per video the fastest backend for its codec that reads it) | decord | torchcodec | ffmpeg"),
    option("batch_size", int, 4, "--batch-size", help="hf backend: prompts per batch."),
    option("frame_cache", Path | None, None, "--frame-cache",
           help="Folder of decoded clips shared by eval, score-difficulty and train."),
    option("frame_cache_gib", float, 16.0, "--frame-cache-gib",
           help="Size bound of the frame cache; least recently used clips go first."),
]  # fmt: skip


def backend_from(values: dict, kind: str, model: str):
    return backend(kind, model, base_url=values["base_url"], decoder=values["decoder"],
                   batch_size=values["batch_size"], concurrency=values["concurrency"],
                   video_mode=values["video_mode"], family=values["model_family"], api_fields=values["api_fields"],
                   n_mode=values["n_mode"], vllm_options=values["vllm_options"],
                   images={"image_detail": values["image_detail"], "max_images": values["max_images"],
                           "over_image_limit": values["over_image_limit"]},
                   gemini={"thinking_budget": values["thinking_budget"], "media_resolution": values["media_resolution"],
                           "inline_mib": values["inline_mib"], "keep_uploads": values["keep_uploads"]},
                   cache=frame_cache(values["frame_cache"], values["frame_cache_gib"]))  # fmt: skip


def print_histogram(title: str, counts: list[int], selected: list[int] | None = None) -> None:
    table = Table(title=title)
    table.add_column("mean IoU")
    table.add_column("samples", justify="right")
    if selected is not None:
        table.add_column("selected", justify="right")
    peak = max(counts or [1]) or 1
    for i, count in enumerate(counts):
        bar = "#" * round(20 * count / peak)
        cells = [f"{i / len(counts):.2f}-{(i + 1) / len(counts):.2f}", f"{count} {bar}"]
        if selected is not None:
            cells.append(str(selected[i]))
        table.add_row(*cells)
    out.print(table)
