"""``vtg-data inspect``: one picture per sample, the frames and every window on one time axis.

Top: a strip of frames sampled at their true times (the time under each, as the decoder reports
it). Below, on the video's time axis: the ground-truth window(s), DiDeMo's annotator
alternatives, the teacher's window (cold-start rows), the k rollouts with their IoUs (difficulty
and RL rows) or the model's prediction (eval runs); the row's flags and a trace excerpt under it.
A missing or broken video gives the timeline alone, saying why.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

from vtg_data.files import atomic_path
from vtg_data.grounding.metrics import best_match
from vtg_data.report.runs import Run, Sample, open_run, samples

COLOURS = {
    "truth": "#2e7d32",
    "alt": "#9e9e9e",
    "teacher": "#ef6c00",
    "rollout": "#1565c0",
    "prediction": "#6a1b9a",
}


def frame_strip(video: Path | None, count: int = 8):
    """(frames, times) sampled evenly, small; (None, reason) when the video cannot be read."""
    if video is None:
        return None, "no video root known (pass --video-root)"
    if not Path(video).is_file():
        return None, f"video not found: {video}"
    from vtg_data.video import DecodeError, SamplingPolicy, sample_frames

    policy = SamplingPolicy(fps=1000.0, min_frames=count, max_frames=count, min_pixels=56 * 56, max_pixels=112 * 112,
                            frame_multiple=1)  # fmt: skip
    try:
        clip = sample_frames(video, policy)
    except DecodeError as exc:
        return None, f"video could not be decoded: {exc.problem}"
    return (clip.frames, [float(t) for t in clip.timestamps]), None


def draw(sample: Sample, path: Path, frames: int = 8) -> Path:
    """The sample's picture as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strip, why = frame_strip(sample.video, frames)
    lanes = _lanes(sample)
    figure = plt.figure(figsize=(12, 2.6 + 0.32 * len(lanes) + (0.6 if sample.trace else 0)), dpi=100)
    grid = figure.add_gridspec(2, 1, height_ratios=[2.0, 0.4 + 0.3 * len(lanes)], hspace=0.45)
    top = figure.add_subplot(grid[0])
    top.set_axis_off()
    if strip is not None:
        images, times = strip
        for i, (image, time) in enumerate(zip(images, times, strict=True)):
            top.imshow(image, extent=(i, i + 0.95, 0, 0.95 * image.shape[0] / image.shape[1]))
            top.text(i + 0.475, -0.08, f"{time:.1f} s", ha="center", va="top", fontsize=8)
        top.set_xlim(0, len(images))
        top.set_ylim(-0.2, 1)
    else:
        top.text(
            0.5, 0.5, why, ha="center", va="center", fontsize=10, color="#b71c1c", transform=top.transAxes
        )
    title = textwrap.shorten(_clean(sample.query), 150, placeholder=" ...")
    figure.suptitle(
        f"{title}\n{_clean(sample.caption)}, {sample.duration:.1f} s", fontsize=10, parse_math=False
    )

    axis = figure.add_subplot(grid[1])
    for lane, (_, spans) in enumerate(lanes):
        for start, end, colour, note in spans:
            axis.broken_barh(
                [(start, max(end - start, sample.duration / 400))], (lane - 0.35, 0.7), color=colour
            )
            if note:
                axis.text(end, lane, f" {note}", va="center", fontsize=7)
    axis.set_yticks(range(len(lanes)), [label for label, _ in lanes], fontsize=8)
    axis.set_ylim(len(lanes) - 0.5, -0.5)
    axis.set_xlim(0, sample.duration)
    axis.set_xlabel("seconds", fontsize=8)
    axis.tick_params(axis="x", labelsize=8)
    axis.grid(axis="x", alpha=0.3)
    notes = [f"flags: {', '.join(sample.flags)}" if sample.flags else ""]
    if sample.trace:
        notes.append("trace: " + textwrap.shorten(_clean(sample.trace), 220, placeholder=" ..."))
    elif sample.prediction_text:
        notes.append("answer: " + textwrap.shorten(_clean(sample.prediction_text), 220, placeholder=" ..."))
    figure.text(
        0.01,
        0.01,
        "\n".join(textwrap.fill(n, 180) for n in notes if n),
        fontsize=7,
        va="bottom",
        parse_math=False,
    )
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return Path(path)


def _clean(text: str) -> str:
    """Model and annotation text as the figure can show it: no control characters."""
    return "".join(c if c.isprintable() else "\u00b7" for c in text)


def _lanes(sample: Sample) -> list[tuple[str, list[tuple[float, float, str, str]]]]:
    lanes = [("ground truth", [(s, e, COLOURS["truth"], f"[{s:.1f}, {e:.1f}]") for s, e in sample.windows])]
    for index, alternative in enumerate(sample.windows_alt):
        lanes.append((f"annotator {index + 1}", [(s, e, COLOURS["alt"], "") for s, e in alternative]))
    if sample.teacher_window:
        s, e = sample.teacher_window
        lanes.append(
            ("teacher", [(s, e, COLOURS["teacher"], f"IoU {best_match((s, e), sample.windows)[0]:.2f}")])
        )
    for index, (window, iou) in enumerate(sample.rollouts):
        spans = [(window[0], window[1], COLOURS["rollout"], f"IoU {iou:.2f}")] if window else []
        lanes.append((f"rollout {index + 1}" + ("" if window else " (no answer)"), spans))
    if sample.prediction is not None or sample.prediction_text is not None:
        spans = []
        if sample.prediction:
            s, e = sample.prediction
            spans = [(s, e, COLOURS["prediction"], f"IoU {sample.score or 0.0:.2f}")]
        lanes.append(("prediction" + ("" if spans else " (no answer)"), spans))
    return lanes


def inspect(
    source: str | Path,
    out: Path,
    *,
    uids: list[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    video_root: Path | None = None,
    frames: int = 8,
) -> list[Path]:
    """Pictures of the given uids, or of ``sample`` samples drawn with ``seed``, under ``out``."""
    run: Run = open_run(source, video_root)
    items = samples(run)
    if uids:
        by_uid = {s.uid: s for s in items}
        missing = [u for u in uids if u not in by_uid]
        if missing:
            raise ValueError(f"{source}: no sample with uid {', '.join(missing[:3])}")
        chosen = [by_uid[u] for u in uids]
    else:
        if not items:
            raise ValueError(f"{source}: no samples with ground truth to inspect")
        chosen = random.Random(seed).sample(items, min(sample or 4, len(items)))
    paths = []
    for item in chosen:
        name = item.uid.replace("/", "__") + ".png"
        paths.append(draw(item, Path(out) / name, frames))
    return paths
