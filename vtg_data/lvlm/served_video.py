"""How a video reaches a served model (vLLM, SGLang) so that it sees what the hf backend sees.

A server left to itself samples frames its own way: vLLM's video loader keeps 32 frames of an
uploaded mp4 unless launched with ``--media-io-kwargs '{"video": {"num_frames": -1}}'``, while the
model is still told the rate the client asked for, so a 28.7-s video looks 16 s long. Here the
client decodes the frames with the same sampling plan (and frame cache) as the other backends
and sends them as one video: a ``video/jpeg`` data URL of the plan's frames at the plan's size
(the route Qwen documents for vLLM), told the rate they were taken at (``plan.fps``) and with
pixel bounds that keep their size. ``media_io_kwargs`` carries the same rate as the frames'
metadata (newer vLLM builds Qwen3-VL's timestamps from it).

``ServerCheck`` then verifies, on the first answers, what the server showed the model: the
visual tokens it counted (``usage.prompt_tokens`` minus the same prompt without its video) must
be those of the frames sent; a server that dropped or resized frames stops the run with the
launch flag that fixes it.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass

# patch grid (patch x spatial merge) and frames per temporal patch of each model family
FAMILIES = {"qwen2.5-vl": {"patch": 28, "temporal": 2}, "qwen3-vl": {"patch": 32, "temporal": 2}}
NUM_FRAMES_FLAG = """--media-io-kwargs '{"video": {"num_frames": -1}}'"""


class ServerMismatch(RuntimeError):
    """The server did not show the model the frames that were sent; the message says how to fix it."""


# hosted models whose visual tokens this toolkit cannot count (no Qwen-VL grid): the server check is off
OTHER = "other"
HOSTED_PREFIXES = (
    "gpt-",
    "chatgpt",
    "o1",
    "o3",
    "o4",
    "gemini",
    "claude",
    "grok",
    "pixtral",
    "mistral",
    "llama",
)


def family_of(model: str, family: str | None = None) -> str:
    """The model family (frame grid, pixel-bound semantics): given, or read from the model name;
    ``other`` for a hosted model of another kind (its visual tokens cannot be counted here)."""
    if family is not None:
        if family not in (*FAMILIES, OTHER):
            raise ValueError(f"family must be one of {sorted(FAMILIES) + [OTHER]}, got {family!r}")
        return family
    name = model.lower().rsplit("/", 1)[-1]
    if "qwen3" in name:
        return "qwen3-vl"
    if name.startswith(HOSTED_PREFIXES):
        return OTHER
    return "qwen2.5-vl"  # a served Qwen2.5-VL checkpoint under any name


def jpeg_image_urls(frames, quality: int = 95) -> tuple[list[str], int]:
    """One ``data:image/jpeg;base64,...`` URL per frame, and their total size."""
    from PIL import Image

    urls = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        urls.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls, sum(len(u) for u in urls)


def evenly(count: int, keep: int) -> list[int]:
    """``keep`` indices spread evenly over ``count`` (first and last included)."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [0]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def jpeg_data_url(frames, quality: int = 95) -> tuple[str, int]:
    """``data:video/jpeg;base64,<frame>,<frame>,...`` (vLLM splits on the commas) and its size."""
    from PIL import Image

    parts = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        parts.append(base64.b64encode(buffer.getvalue()).decode())
    url = "data:video/jpeg;base64," + ",".join(parts)
    return url, len(url)


def frame_kwargs(plan, family: str) -> dict:
    """Request fields that make a server take the frames as sent: the rate they were taken at,
    no resampling, and pixel bounds equal to their size (per frame for Qwen2.5-VL; per clip for
    Qwen3-VL, whose video processor bounds the whole clip)."""
    frames = len(plan.indices)
    processor = {"fps": plan.fps, "do_sample_frames": False}
    if family == "qwen3-vl":
        temporal = FAMILIES[family]["temporal"]
        pixels = math.ceil(frames / temporal) * temporal * plan.height * plan.width
        processor["size"] = {"shortest_edge": pixels, "longest_edge": pixels}
    else:
        processor.update(min_pixels=plan.height * plan.width, max_pixels=plan.height * plan.width)
    media = {"video": {"num_frames": -1, "fps": plan.fps, "do_sample_frames": False}}
    return {"mm_processor_kwargs": processor, "media_io_kwargs": media}


def visual_tokens(frames: int, height: int, width: int, family: str) -> int:
    """Tokens of the video placeholders for ``frames`` frames of ``height`` x ``width`` (an odd
    count is padded to a whole temporal patch, as the processors do)."""
    grid = FAMILIES[family]
    groups = math.ceil(frames / grid["temporal"])
    return groups * (height // grid["patch"]) * (width // grid["patch"])


@dataclass
class Expectation:
    frames: int
    height: int
    width: int
    tokens: int  # visual tokens of the frames sent
    extra_max: int  # what the template may add around them (vision start/end, Qwen3-VL timestamps)


def expectation(plan, family: str) -> Expectation:
    frames = len(plan.indices)
    tokens = visual_tokens(frames, plan.height, plan.width, family)
    groups = math.ceil(frames / FAMILIES[family]["temporal"])
    extra = 4 if family == "qwen2.5-vl" else 16 * groups + 4  # Qwen3-VL: "<t seconds>" + start/end per group
    return Expectation(frames, plan.height, plan.width, tokens, extra)


class ServerCheck:
    """What the server showed the model, checked from its own token counts.

    Every answer is checked against a floor (its prompt cannot hold fewer tokens than the frames
    sent make). The first answer of each new frame count or size is checked exactly: the same
    prompt without its video is sent once (one token asked) and the difference is the video's
    share. ``verdicts`` records each exact check for the manifest.
    """

    def __init__(self, family: str):
        self.family = family
        self.lock = threading.Lock()
        self.checked_sizes: set[tuple[int, int]] = set()
        self.most_frames = 0
        self.verdicts: list[dict] = []
        self.unchecked_reason: str | None = None

    def needs_exact(self, expected: Expectation) -> bool:
        with self.lock:
            size = (expected.height, expected.width)
            if size in self.checked_sizes and expected.frames <= self.most_frames:
                return False
            self.checked_sizes.add(size)
            self.most_frames = max(self.most_frames, expected.frames)
            return True

    def floor(self, expected: Expectation, prompt_tokens: int | None, uid: str) -> None:
        """A prompt shorter than the frames alone: frames were dropped or shrunk."""
        if prompt_tokens is None:
            self.unchecked_reason = "the server reports no usage.prompt_tokens"
            return
        if prompt_tokens < expected.tokens:
            raise ServerMismatch(self._explain(expected, prompt_tokens, uid, exact=False))

    def exact(
        self, expected: Expectation, prompt_tokens: int | None, text_tokens: int | None, uid: str
    ) -> None:
        if prompt_tokens is None or text_tokens is None:
            self.unchecked_reason = "the server reports no usage.prompt_tokens"
            return
        seen = prompt_tokens - text_tokens
        ok = expected.tokens <= seen <= expected.tokens + expected.extra_max
        self.verdicts.append(
            {"uid": uid, "frames": expected.frames, "size": [expected.width, expected.height],
             "expected_visual_tokens": expected.tokens, "seen_tokens": seen, "ok": ok}
        )  # fmt: skip
        if not ok:
            raise ServerMismatch(self._explain(expected, seen, uid, exact=True))

    def _explain(self, expected: Expectation, seen: int, uid: str, *, exact: bool) -> str:
        what = "its video took" if exact else "its whole prompt took"
        head = (
            f"{uid}: the server did not show the model the {expected.frames} frames sent at "
            f"{expected.width}x{expected.height} ({expected.tokens} visual tokens); {what} {seen} tokens. "
        )
        bounds = (
            f"""--mm-processor-kwargs '{{"min_pixels": {expected.height * expected.width}, """
            f""""max_pixels": {expected.height * expected.width}}}'"""
        )
        if seen < expected.tokens:
            pair = visual_tokens(2, expected.height, expected.width, self.family)
            # the video's share of the prompt holds its two vision start/end tokens besides the frames
            kept = (
                f"It kept about {2 * max(seen - 2, 0) // pair} frames: "
                if exact and pair
                else "It dropped frames: "
            )
            return head + (
                f"{kept}vLLM keeps 32 frames of a video unless launched with {NUM_FRAMES_FLAG}. Relaunch the "
                f"server with that flag (README: Serving); if it keeps every frame, it shrank them: launch it "
                f"with {bounds}."
            )
        return head + (
            f"It enlarged the frames (a pixel floor of its own): launch it with {bounds}, or give this run the "
            "server's bounds with --min-pixels/--max-pixels (README: Serving)."
        )
