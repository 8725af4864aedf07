"""A loopback stand-in for ``vllm serve MODEL [flags]`` that does what vLLM does by default.

Written from vLLM's own source and documentation (vllm/entrypoints/openai/protocol.py,
vllm/multimodal/video.py and media/video.py, vllm/v1/engine/parallel_sampling.py, the
reasoning parsers), not from what the client expects:

- sampling: a field the request leaves out (``None``) is filled from the checkpoint's
  ``generation_config.json`` (``--generation-config auto``, the default since 0.8: only
  repetition_penalty, temperature, top_k, top_p, min_p and max_new_tokens are read), else from
  vLLM's own defaults (1.0, 1.0, -1/0 = off, 0.0); ``--generation-config vllm`` skips the file;
  top_k below -1 is a 400; ``n`` children sample with seeds ``seed + i``;
- video: an uploaded mp4 (``data:video/mp4;base64``, or ``file://`` under
  ``--allowed-local-media-path``) goes through the 32-frame loader (``num_frames`` 32 unless
  ``--media-io-kwargs '{"video": {"num_frames": -1}}'``; ``fps`` samples at most floor(duration x
  fps) frames; indices ``linspace(0, total - 1, n)``); a ``video/jpeg`` data URL is split on
  commas and also cut to ``num_frames``; its metadata (``fps`` default 1, ``frames_indices``,
  ``total_num_frames``, ``do_sample_frames``) comes from ``media_io_kwargs``, which a request may
  override (request ``fps`` drops the launch ``num_frames`` and the reverse; ``request_media_io=False``:
  a server that reads them from its launch only);
- the model is told ``mm_processor_kwargs["fps"]`` when given (Qwen2.5-VL's processor:
  ``second_per_grid_ts = 2 / fps``), else the frames' metadata rate; ``do_sample_frames`` makes
  the processor resample frames of a fully read video at that fps; pixel bounds are the
  request's or launch's ``mm_processor_kwargs``, else the model's processor defaults;
- per-request ``mm_processor_kwargs`` / ``media_io_kwargs`` are refused with a 400 unless the server
  was launched with ``--trust-request-mm-kwargs`` (vLLM 0.32:
  ``entrypoints/generate/base/protocol.py`` ``validate_request_mm_kwargs``), with vLLM's message;
- errors are vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``;
- unknown request fields are ignored with a warning (kept in ``ignored``), never refused;
- ``--reasoning-parser``: the text before ``</think>`` goes to ``message.reasoning_content``;
- ``usage.prompt_tokens`` counts the prompt as processed (video tokens included).

Where it is known to differ from vLLM 0.32 (tests/vllm_real holds it to the real server):
- whole-file uploads: the frame count follows ``media_io_kwargs`` ``num_frames``/``fps`` as
  ``VideoMediaIO`` reads them (checked: vLLM's loader called directly gives these counts), but the
  served path was measured giving other counts for the same request (for example 20 frames of a
  13-s video asked at 2 fps and at most 16; a request without media kwargs gets about 1.2 fps);
  answers to whole-file requests are therefore not compared, only accepted;
- sampling at temperature > 0 draws other tokens than vLLM's sampler for the same seed.

Every request's record (``server.seen``) says what the model was shown: frames, the fps it was
told, the frame size, the sampling it ran with. ``faults``/``broken`` inject failures per query text.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import shlex
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
from loopback import LoopbackServer

GENERATION_CONFIG_FIELDS = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")
VLLM_DEFAULTS = {"repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
KNOWN_FIELDS = {
    "model", "messages", "n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
    "frequency_penalty", "max_tokens", "max_completion_tokens", "seed", "stop", "stream", "logprobs",
    "top_logprobs", "response_format", "mm_processor_kwargs", "media_io_kwargs", "chat_template_kwargs",
    "structured_outputs", "user", "skip_special_tokens", "include_stop_str_in_output",
}  # fmt: skip


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


# vLLM 0.32's words (validate_request_mm_kwargs), for a request's own multimodal kwargs
UNTRUSTED_KWARGS = (
    "Per-request {field} are disabled by default because they can change multimodal {what} resource "
    "usage. Start the server with --trust-request-mm-kwargs only when clients are trusted."
)


def parse_launch(line: str) -> dict:
    """The options of a ``vllm serve MODEL ...`` line this stand-in honours."""
    words = shlex.split(line.replace("\\\n", " "))
    if words[:2] != ["vllm", "serve"]:
        raise ValueError(f"not a vllm serve line: {line}")
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("model")
    parser.add_argument("--media-io-kwargs", type=json.loads, default={})
    parser.add_argument("--mm-processor-kwargs", type=json.loads, default={})
    parser.add_argument("--limit-mm-per-prompt", type=json.loads, default={})
    parser.add_argument("--generation-config", default="auto")
    parser.add_argument("--reasoning-parser", default=None)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--allowed-local-media-path", default=None)
    parser.add_argument("--trust-request-mm-kwargs", action="store_true")
    known, _ = parser.parse_known_args(words[2:])  # other flags (ports, parallelism) do not matter here
    return {
        "media_io_kwargs": known.media_io_kwargs,
        "mm_processor_kwargs": known.mm_processor_kwargs,
        "limit_mm_per_prompt": known.limit_mm_per_prompt,
        "generation_config": known.generation_config,
        "reasoning_parser": known.reasoning_parser,
        "max_model_len": known.max_model_len,
        "allowed_local_media_path": known.allowed_local_media_path,
        "trust_request_mm_kwargs": known.trust_request_mm_kwargs,
    }


def merge_media_kwargs(launch: dict, request: dict | None) -> dict:
    """vLLM's VideoMediaIO.merge_kwargs: a request overrides the launch values; a request ``fps``
    without ``num_frames`` drops the launch ``num_frames``, and the reverse."""
    merged = dict(launch)
    if request:
        merged.update(request)
        if "num_frames" in request and "fps" not in request:
            merged.pop("fps", None)
        elif "fps" in request and "num_frames" not in request:
            merged.pop("num_frames", None)
    return merged


class VLLMServer(LoopbackServer):
    url_path = "/v1"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        media_io_kwargs: dict | None = None,
        mm_processor_kwargs: dict | None = None,
        limit_mm_per_prompt: dict | None = None,
        generation_config: str = "auto",
        reasoning_parser: str | None = None,
        max_model_len: int | None = None,
        allowed_local_media_path: str | None = None,
        trust_request_mm_kwargs: bool = False,
        request_media_io: bool = True,
        responder=None,
        slow_seconds: float = 3.0,
    ):
        import torch
        from transformers import AutoProcessor, GenerationConfig

        from vtg_data.lvlm.hf import load_model

        self.torch = torch
        self.model_dir = Path(model_dir)
        self.processor = AutoProcessor.from_pretrained(str(model_dir))
        # the model as vLLM runs it: Qwen2.5-VL's reference multimodal positions (lvlm.positions)
        self.model = load_model(model_dir).eval()
        checkpoint = self.model.generation_config
        # the engine stops on the checkpoint's end tokens; everything else about sampling comes
        # from the request, or from the defaults below
        self.model.generation_config = GenerationConfig(eos_token_id=checkpoint.eos_token_id,
                                                        pad_token_id=checkpoint.pad_token_id)  # fmt: skip
        self.defaults = dict(VLLM_DEFAULTS)
        if generation_config == "auto":
            file = self.model_dir / "generation_config.json"
            shipped = json.loads(file.read_text()) if file.is_file() else {}
            self.defaults.update({k: shipped[k] for k in GENERATION_CONFIG_FIELDS if k in shipped})
        self.media_io_kwargs = {"num_frames": 32, **(media_io_kwargs or {}).get("video", {})}
        self.mm_processor_kwargs = dict(mm_processor_kwargs or {})
        self.limit_mm_per_prompt = limit_mm_per_prompt or {}
        self.reasoning_parser = reasoning_parser
        self.max_model_len = max_model_len or self.model.config.get_text_config().max_position_embeddings
        self.allowed_local_media_path = allowed_local_media_path
        self.trust_request_mm_kwargs = trust_request_mm_kwargs
        # vLLM merges a request's media_io_kwargs over the launch's; a server that does not (older
        # builds, or a proxy that drops the field) reads them from its launch only
        self.request_media_io = request_media_io
        self.responder = responder
        self.slow_seconds = slow_seconds
        self.seen: list[dict] = []
        self.bodies: list[dict] = []
        self.ignored: list[list[str]] = []
        self.probes = 0
        self.faults: dict[str, list[str]] = {}
        self.broken: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        tokenizer = self.processor.tokenizer
        self.suppress = sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    return self.reply(404, {"error": "no such route"})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fault = server.take_fault(body)
                if fault == "500":
                    return self.reply(500, {"error": "boom"})
                if fault == "400":
                    return self.reply(400, {"error": "bad request: unknown field"})
                if fault in ("429", "429long"):
                    return self.reply(
                        429, {"error": "slow down"}, {"Retry-After": "0.1" if fault == "429" else "2"}
                    )
                if fault == "timeout":
                    time.sleep(server.slow_seconds)
                    return self.reply(200, {})
                if fault == "malformed":
                    return self.raw(200, b'{"choices": [{"mess')
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                try:
                    return self.reply(200, server.complete(body))
                except RequestError as exc:
                    # vLLM's validation errors name their parameter at the end of the message
                    message = f"{exc} (parameter={exc.param})" if exc.param else str(exc)
                    error = {
                        "message": message,
                        "type": "BadRequestError",
                        "param": exc.param,
                        "code": exc.status,
                    }
                    return self.reply(exc.status, {"error": error})

            def reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                self.raw(status, json.dumps(payload).encode(), headers)

            def raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._listen(Handler)

    @classmethod
    def launched(cls, line: str, model_dir, **overrides) -> VLLMServer:
        """The stand-in started as ``line`` (a ``vllm serve`` command) says."""
        return cls(model_dir, **{**parse_launch(line), **overrides})

    # ------------------------------------------------------------------------------------------

    @staticmethod
    def query_text(body: dict) -> str:
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return user if isinstance(user, str) else " ".join(p["text"] for p in user if p["type"] == "text")

    @staticmethod
    def has_video(body: dict) -> bool:
        return any(
            isinstance(m["content"], list) and any(p["type"] == "video_url" for p in m["content"])
            for m in body["messages"]
        )

    def take_fault(self, body: dict) -> str | None:
        query = self.query_text(body)
        with self.lock:
            self.bodies.append(body)
            if body.get("max_tokens") == 1 and not self.has_video(body):
                self.probes += 1  # a client's text-only twin: not an attempt of the query
                return None
            self.attempts[query] = self.attempts.get(query, 0) + 1
            if query in self.broken:
                return "500"
            return self.faults[query].pop(0) if self.faults.get(query) else None

    def sampling(self, body: dict) -> dict:
        fields = {
            name: body.get(name) if body.get(name) is not None else self.defaults[name]
            for name in VLLM_DEFAULTS
        }
        if fields["top_k"] < -1:
            raise RequestError(400, f"top_k must be 0 (disable), or at least 1, got {fields['top_k']}.")
        if not 0 < fields["top_p"] <= 1:
            raise RequestError(400, f"top_p must be in (0, 1], got {fields['top_p']}.")
        fields["top_k"] = max(fields["top_k"], 0)
        return fields

    def complete(self, body: dict) -> dict:
        if not self.trust_request_mm_kwargs:
            for field, what in (
                ("mm_processor_kwargs", "preprocessing"),
                ("media_io_kwargs", "media loading"),
            ):
                if body.get(field):
                    raise RequestError(400, UNTRUSTED_KWARGS.format(field=field, what=what), field)
        ignored = sorted(set(body) - KNOWN_FIELDS)
        if ignored:  # vLLM: "The following fields were present in the request but ignored: ..."
            self.ignored.append(ignored)
        sampling = self.sampling(body)
        n = body.get("n") or 1
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        messages, videos = self.read_messages(body)
        limit = self.limit_mm_per_prompt.get("video", 999)
        if len(videos) > limit:
            raise RequestError(400, f"At most {limit} video(s) may be provided in one prompt.")
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        record = {"sampling": sampling, "n": n, "seed": body.get("seed")}
        kwargs = {}
        if videos:
            frames, metadata = videos[0]
            frames, fps_told, pixel_kwargs = self.processor_view(frames, metadata, body)
            from transformers.video_utils import VideoMetadata

            shown = VideoMetadata(total_num_frames=len(frames), fps=fps_told, duration=len(frames) / fps_told,
                                  frames_indices=list(range(len(frames))), height=frames.shape[1], width=frames.shape[2])  # fmt: skip
            kwargs = {
                "videos": [frames],
                "video_metadata": [shown],
                "do_sample_frames": False,
                **pixel_kwargs,
            }
            record.update(frames_seen=len(frames), fps_told=fps_told)
        inputs = self.processor(text=[text], return_tensors="pt", **kwargs)
        if "video_grid_thw" in inputs:
            t, h, w = inputs["video_grid_thw"][0].tolist()
            patch = self.processor.video_processor.patch_size
            record["size"] = [w * patch, h * patch]
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if prompt_tokens + max_tokens > self.max_model_len:
            raise RequestError(400, f"This model's maximum context length is {self.max_model_len} tokens. However, "
                                    f"you requested {prompt_tokens + max_tokens} tokens.")  # fmt: skip
        texts = (
            self.responder(messages, record, n)
            if self.responder
            else self.sample(inputs, sampling, n, max_tokens, body.get("seed"))
        )
        if videos or max_tokens != 1:  # a client's text-only twin is not a request of its own
            with self.lock:
                self.seen.append(record)
        choices = []
        for i, raw in enumerate(texts):
            message = {"role": "assistant", "content": raw}
            if self.reasoning_parser and "</think>" in raw:
                thought, _, answer = raw.partition("</think>")
                message = {"role": "assistant", "reasoning_content": thought.replace("<think>", "", 1).strip("\n"),
                           "content": answer.lstrip("\n")}  # fmt: skip
            choices.append({"index": i, "message": message, "finish_reason": "stop"})
        completion = sum(len(self.processor.tokenizer(t)["input_ids"]) for t in texts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                 "total_tokens": prompt_tokens + completion}  # fmt: skip
        return {"id": f"chatcmpl-{len(self.seen)}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "choices": choices, "usage": usage}  # fmt: skip

    def sample(self, inputs, sampling: dict, n: int, max_tokens: int, seed) -> list[str]:
        """n children, child i seeded ``seed + i`` (vLLM's ParentRequest), each a plain sample of
        the distribution the request and the defaults set (greedy at temperature 0)."""
        from transformers import GenerationConfig

        torch = self.torch
        greedy = sampling["temperature"] == 0
        config = GenerationConfig(do_sample=not greedy, max_new_tokens=max_tokens, suppress_tokens=self.suppress,
                                  repetition_penalty=sampling["repetition_penalty"],
                                  **({} if greedy else {"temperature": sampling["temperature"], "top_p": sampling["top_p"],
                                                        "top_k": sampling["top_k"], "min_p": sampling["min_p"] or None}))  # fmt: skip
        texts = []
        for i in range(n):
            torch.manual_seed(seed + i if seed is not None else int(time.time_ns() % 2**31))
            with torch.no_grad(), self.lock:
                out = self.model.generate(**inputs, generation_config=config)
            texts.append(
                self.processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            )
        return texts

    # ------------------------------------------------------------------------------------------
    # Video: the loader, then the processor's view of it

    def read_messages(self, body: dict) -> tuple[list[dict], list[tuple[np.ndarray, dict]]]:
        messages, videos = [], []
        media = (body.get("media_io_kwargs") or {}).get("video") if self.request_media_io else None
        for message in body["messages"]:
            content = message["content"]
            if isinstance(content, str):
                messages.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
                continue
            parts = []
            for part in content:
                if part["type"] == "video_url":
                    videos.append(
                        self.load_video(
                            part["video_url"]["url"], merge_media_kwargs(self.media_io_kwargs, media)
                        )
                    )
                    parts.append({"type": "video"})
                elif part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
            messages.append({"role": message["role"], "content": parts})
        return messages, videos

    def load_video(self, url: str, kwargs: dict) -> tuple[np.ndarray, dict]:
        num_frames = kwargs.get("num_frames", -1)
        if url.startswith("data:video/jpeg;base64,"):
            from PIL import Image

            parts = url.split(",", 1)[1].split(",")
            if num_frames > 0:
                parts = parts[:num_frames]
            frames = np.stack(
                [np.asarray(Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")) for p in parts]
            )
            fps = float(kwargs.get("fps", 1))
            metadata = {"total_num_frames": int(kwargs.get("total_num_frames", len(frames))), "fps": fps,
                        "frames_indices": kwargs.get("frames_indices", list(range(len(frames)))),
                        "do_sample_frames": kwargs.get("do_sample_frames", False)}  # fmt: skip
            return frames, metadata
        if url.startswith("file://"):
            path = Path(url[len("file://") :])
            allowed = self.allowed_local_media_path
            if allowed is None or not path.resolve().is_relative_to(Path(allowed).resolve()):
                raise RequestError(400, "Cannot load local files without `--allowed-local-media-path`.")
            data = path.read_bytes()
        elif url.startswith("data:video/"):
            data = base64.b64decode(url.split(",", 1)[1])
        else:
            raise RequestError(400, f"unsupported video URL {url[:40]}")
        return self.opencv_like_loader(data, num_frames, float(kwargs.get("fps", -1)))

    def opencv_like_loader(self, data: bytes, num_frames: int, fps: float) -> tuple[np.ndarray, dict]:
        """vLLM's default loader: the fewer of ``num_frames`` and floor(duration x fps) frames, at
        ``linspace(0, total - 1, n)``; metadata with the native rate and the indices kept."""
        import tempfile

        import decord

        with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
            file.write(data)
            file.flush()
            reader = decord.VideoReader(file.name)
            total, native = len(reader), float(reader.get_avg_fps())
            duration = total / native
            count = min(num_frames, total) if num_frames > 0 else total
            if fps > 0:
                count = min(count, math.floor(duration * fps))
            count = max(1, count)
            indices = (
                list(range(total)) if count == total else np.linspace(0, total - 1, count, dtype=int).tolist()
            )
            frames = reader.get_batch(indices).asnumpy()
        metadata = {"total_num_frames": total, "fps": native, "frames_indices": indices,
                    "do_sample_frames": len(indices) == total}  # fmt: skip
        return frames, metadata

    def processor_view(
        self, frames: np.ndarray, metadata: dict, body: dict
    ) -> tuple[np.ndarray, float, dict]:
        """What Qwen-VL's processor makes of the loaded frames: resampled at ``fps`` when asked and
        the video was read whole; the rate the model is told; the pixel bounds."""
        mm = {**self.mm_processor_kwargs, **(body.get("mm_processor_kwargs") or {})}
        told = mm.get("fps")
        if mm.get("do_sample_frames") and metadata.get("do_sample_frames") and told:
            total, native = metadata["total_num_frames"], metadata["fps"]
            count = min(max(total / native * told, 4), 768, total)
            count = max(2, math.floor(count / 2) * 2)
            indices = [min(total - 1, int(i)) for i in np.arange(0, total, total / count)][:count]
            frames = frames[indices]
            told = count / (total / native)
        if told is None:  # the frames' own metadata
            told = len(metadata["frames_indices"]) / metadata["total_num_frames"] * metadata["fps"]
        pixels = {}
        if "min_pixels" in mm or "max_pixels" in mm:
            default = self.processor.video_processor.size
            pixels["size"] = {"shortest_edge": mm.get("min_pixels", default["shortest_edge"]),
                              "longest_edge": mm.get("max_pixels", default["longest_edge"])}  # fmt: skip
        elif "size" in mm:
            pixels["size"] = mm["size"]
        return frames, float(told), pixels
