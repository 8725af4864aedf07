"""A corpus made on the spot with ffmpeg: the embedded default for the demo and the tests.

Each video is a sequence of scenes (a solid colour field, or a square moving across one) whose
boundaries fall on the frame grid, so every query's window is exact. Annotations are written in the
ActivityNet Captions layout and go through the same parser as the real corpora. Everything is a
function of the seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from vtg_data.corpora.activitynet_captions import ActivityNetFormat
from vtg_data.corpora.base import NativeFile

GENERATOR_VERSION = 1
COLOURS = {
    "red": "0xE02020",
    "green": "0x20C040",
    "blue": "0x2040E0",
    "yellow": "0xF0E020",
    "white": "0xF0F0F0",
    "black": "0x101010",
    "purple": "0x9030C0",
    "orange": "0xF08020",
    "cyan": "0x20D0E0",
}
DIRECTIONS = {
    "left to right": ("(W-w)*t/{d}", "(H-h)/2"),
    "right to left": ("(W-w)*(1-t/{d})", "(H-h)/2"),
    "top to bottom": ("(W-w)/2", "(H-h)*t/{d}"),
    "bottom to top": ("(W-w)/2", "(H-h)*(1-t/{d})"),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """How the synthetic corpus is made; every field is recorded next to the annotations."""

    n_videos: int = 8
    seed: int = 0
    min_duration: float = 6.0
    max_duration: float = 40.0
    fps: int = 10
    width: int = 160
    height: int = 120
    layout: str = (
        "scenes"  # scenes (2-5 scenes, one query each) | single_event (one coloured stretch, one query)
    )

    def __post_init__(self) -> None:
        if self.layout not in ("scenes", "single_event"):
            raise ValueError("layout must be 'scenes' or 'single_event'")
        if self.n_videos < 1:
            raise ValueError("n_videos must be at least 1")
        if not 2.0 <= self.min_duration <= self.max_duration:
            raise ValueError("need 2 <= min_duration <= max_duration")
        if self.fps < 1 or self.width < 32 or self.height < 32:
            raise ValueError("fps must be >= 1 and the frame at least 32x32")


@dataclass(frozen=True)
class Scene:
    start: float
    end: float
    background: str
    square: str | None = None
    direction: str | None = None
    query: str | None = None  # set on the one annotated scene of a single-event video
    annotated: bool = True

    def sentence(self) -> str:
        if self.query is not None:
            return self.query
        if self.square is None:
            return f"The screen is filled with {self.background}."
        article = "An" if self.square[0] in "aeiou" else "A"
        return (
            f"{article} {self.square} square moves from {self.direction} over a {self.background} background."
        )


def plan_single_event(rng: random.Random, cfg: SyntheticConfig) -> list[Scene]:
    """A grey screen (level 40-120) that turns one colour for 2 s to 60% of the video."""
    steps = round((cfg.max_duration - cfg.min_duration) / 0.5)
    duration = cfg.min_duration + 0.5 * rng.randint(0, steps)
    grey = f"grey-{rng.randint(40, 120)}"
    colour = rng.choice(["red", "green", "blue", "yellow"])
    longest = max(2.0, 0.6 * duration)
    length = round(rng.uniform(2.0, longest), 1)
    start = round(rng.uniform(0.0, duration - length), 1)
    end = round(start + length, 1)
    scenes = []
    if start > 0:
        scenes.append(Scene(0.0, start, grey, annotated=False))
    scenes.append(Scene(start, end, colour, query=f"When is the screen {colour}?"))
    if end < duration:
        scenes.append(Scene(end, duration, grey, annotated=False))
    return scenes


def _hex(name: str) -> str:
    if name.startswith("grey-"):
        level = int(name[5:])
        return f"0x{level:02X}{level:02X}{level:02X}"
    return COLOURS[name]


def plan_video(rng: random.Random, cfg: SyntheticConfig) -> list[Scene]:
    if cfg.layout == "single_event":
        return plan_single_event(rng, cfg)
    """Scenes of one video: 2-5 segments on the frame grid, neighbours with different backgrounds."""
    frames = rng.randint(round(cfg.min_duration * cfg.fps), round(cfg.max_duration * cfg.fps))
    shortest = cfg.fps  # no scene under one second: a moment a model can see
    n_scenes = max(1, min(rng.randint(2, 5), frames // shortest))
    spare = frames - n_scenes * shortest
    points = sorted(rng.randint(0, spare) for _ in range(n_scenes - 1))
    lengths = [shortest + b - a for a, b in zip([0, *points], [*points, spare], strict=True)]
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)
    scenes, used, previous = [], set(), None
    for a, b in zip(bounds, bounds[1:], strict=False):
        while True:
            background = rng.choice(list(COLOURS))
            square = rng.choice([None, *[c for c in COLOURS if c != background]])
            direction = rng.choice(list(DIRECTIONS)) if square else None
            key = (background, square, direction)
            if background != previous and key not in used:
                break
        used.add(key)
        previous = background
        scenes.append(Scene(a / cfg.fps, b / cfg.fps, background, square, direction))
    return scenes


def encode_video(scenes: list[Scene], path: Path, cfg: SyntheticConfig) -> None:
    """Render the scenes with ffmpeg into an H.264 MP4 (written to a temp name, then renamed)."""
    import ffmpeg

    streams = []
    size = f"{cfg.width}x{cfg.height}"
    side = max(8, cfg.height // 4)
    for scene in scenes:
        length = round((scene.end - scene.start) * cfg.fps) / cfg.fps
        background = ffmpeg.input(
            f"color=c={_hex(scene.background)}:s={size}:r={cfg.fps}:d={length}", f="lavfi"
        )
        if scene.square:
            square = ffmpeg.input(
                f"color=c={COLOURS[scene.square]}:s={side}x{side}:r={cfg.fps}:d={length}", f="lavfi"
            )
            x, y = (expr.format(d=length) for expr in DIRECTIONS[scene.direction])
            background = ffmpeg.overlay(background, square, x=x, y=y, eval="frame")
        streams.append(background)
    joined = ffmpeg.concat(*streams, v=1, a=0) if len(streams) > 1 else streams[0]
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    out = ffmpeg.output(
        joined,
        str(tmp),
        vcodec="libx264",
        pix_fmt="yuv420p",
        preset="ultrafast",
        g=cfg.fps,
        r=cfg.fps,
        **{"bitexact": None, "threads": 1},
    )
    try:
        out.overwrite_output().run(quiet=True)
    except ffmpeg.Error as exc:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"ffmpeg failed to render {path.name}: {exc.stderr.decode(errors='replace')[-800:]}"
        ) from exc
    tmp.replace(path)


def split_of(index: int) -> str:
    return "test" if index % 4 == 1 else "train"


def generate_synthetic(
    raw_dir: Path, video_dir: Path, cfg: SyntheticConfig, progress=None
) -> dict[str, Path]:
    """Write ``{split}.json`` annotations and the videos; skip all work if they already match ``cfg``."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)
    stamp_path = raw_dir / "generation.json"
    stamp = {"generator_version": GENERATOR_VERSION, **asdict(cfg)}
    rng = random.Random(cfg.seed)
    plans = [(f"syn{cfg.seed:04d}_{i:05d}", plan_video(rng, cfg)) for i in range(cfg.n_videos)]
    splits: dict[str, dict] = {}
    for index, (video_id, scenes) in enumerate(plans):
        annotated = [s for s in scenes if s.annotated]
        splits.setdefault(split_of(index), {})[video_id] = {
            "duration": scenes[-1].end,
            "timestamps": [[s.start, s.end] for s in annotated],
            "sentences": [s.sentence() for s in annotated],
        }
    files = {f"{split}.json": raw_dir / f"{split}.json" for split in splits}
    up_to_date = (
        stamp_path.is_file()
        and json.loads(stamp_path.read_text()) == stamp
        and all(p.is_file() for p in files.values())
        and all((video_dir / f"{vid}.mp4").is_file() for vid, _ in plans)
    )
    if up_to_date:
        return files
    task = progress.add_task("rendering synthetic videos", total=len(plans)) if progress else None
    for video_id, scenes in plans:
        target = video_dir / f"{video_id}.mp4"
        if not target.is_file():
            encode_video(scenes, target, cfg)
        if progress:
            progress.advance(task)
    for split, records in splits.items():
        tmp = files[f"{split}.json"].with_suffix(".json.tmp")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        tmp.replace(files[f"{split}.json"])
    stamp_path.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    return files


class Synthetic(ActivityNetFormat):
    name = "synthetic"
    splits = ("train", "test")
    task = "moment retrieval (generated)"
    licence = "generated by vtg-data; no restrictions"
    homepage = ""
    generated = True
    files_hint = "rerun `vtg-data download synthetic`"

    def generate(self, raw: Path, videos: Path, settings: SyntheticConfig, progress=None) -> list[str]:
        generate_synthetic(raw, videos, settings, progress)
        present = {p.stem for p in raw.glob("*.json")}
        return [s for s in self.splits if s in present]

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        return [NativeFile(f"{split}.json")]

    def extra_for(self, value: dict, index: int) -> dict:
        return {"generator_version": GENERATOR_VERSION}
