"""The vLLM offline-engine backend: ``n`` samples per prompt in the engine, prefix caching on.

vLLM is an optional extra that lives in its own environment (it pins torch and transformers), so
it is imported only when this backend is built. Frames are decoded here, once per video, with the
same sampling plan as every other backend, and handed to vLLM with their metadata (native fps,
frame count and indices) so the model is told the true timing; vLLM does not sample frames again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from vtg_data.lvlm.base import (
    BackendIdentity,
    GenerationParams,
    InferenceBackend,
    Request,
    Response,
    video_summary,
)
from vtg_data.lvlm.grouping import batches_by_video
from vtg_data.lvlm.hf import decoded_frame_kwargs
from vtg_data.video import FrameCache


def vllm_sampling(params: GenerationParams, **extra) -> dict:
    """``SamplingParams`` fields for ``params``: every field that shapes the distribution stated
    (top_k -1 is "off" in every vLLM version; 0 only in newer ones), nothing left to a default."""
    return {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or -1,
        "min_p": params.min_p,
        "repetition_penalty": params.repetition_penalty,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        **extra,
    }


def vllm_request(processor, request: Request, clip) -> dict:
    """A vLLM prompt: the chat text and, with a video, the decoded frames and their timing.

    vLLM runs the model's own processor on them; ``do_sample_frames``/``do_resize`` off make it
    take the frames as decoded (already on the patch grid) and the metadata as the true timing.
    """
    text = processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
    prompt: dict = {"prompt": text}
    if clip is not None:
        plan = clip.plan
        metadata = {
            "fps": plan.native_fps,
            "duration": plan.duration,
            "total_num_frames": plan.native_frames,
            "frames_indices": list(plan.indices),
            "video_backend": clip.backend,
            "do_sample_frames": False,
        }
        prompt["multi_modal_data"] = {"video": (clip.frames, metadata)}
        prompt["mm_processor_kwargs"] = decoded_frame_kwargs(processor)
    return prompt


class VLLMBackend(InferenceBackend):
    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        decode_backend: str = "auto",
        frame_cache: FrameCache | None = None,
        decode_timeout: float | None = 120.0,
        chunk_size: int = 64,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        engine_options: dict | None = None,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "the vllm backend needs vLLM; install it in its own environment: pip install 'vtg-data[vllm]'"
            ) from exc
        from transformers import AutoProcessor

        self._vllm = vllm
        options = {
            "model": model,
            "revision": revision,
            "limit_mm_per_prompt": {"video": 1, "image": 0},
            "enable_prefix_caching": enable_prefix_caching,
            "gpu_memory_utilization": gpu_memory_utilization,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            **(engine_options or {}),
        }
        if max_model_len:
            options["max_model_len"] = max_model_len
        self.llm = vllm.LLM(**options)
        self.processor = AutoProcessor.from_pretrained(model, **({"revision": revision} if revision else {}))
        video_processor = self.processor.video_processor
        self.patch = video_processor.patch_size * getattr(video_processor, "merge_size", 1)
        self.temporal_patch = getattr(video_processor, "temporal_patch_size", 1)
        self.identity = BackendIdentity("vllm", model, revision or "")
        self.decode_backend = decode_backend
        self.frame_cache = frame_cache
        self.decode_timeout = decode_timeout
        self.chunk_size = chunk_size
        self.decoded_by: Counter = Counter()

    def backend_notes(self) -> dict:
        return {"clips_by_decoder": dict(self.decoded_by)}

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        sampling = self._vllm.SamplingParams(**vllm_sampling(params))
        for item in batches_by_video(
            requests, batch_size=self.chunk_size, patch=self.patch, temporal_patch=self.temporal_patch,
            decode_backend=self.decode_backend, frame_cache=self.frame_cache, decode_timeout=self.decode_timeout,
            decoded_by=self.decoded_by,
        ):  # fmt: skip
            if isinstance(item, Response):
                yield self._emit(item, on_response)
            else:
                yield from self._run(item, sampling, on_response)

    def _run(self, chunk, sampling, on_response) -> Iterator[Response]:
        start = time.perf_counter()
        try:
            outputs = self.llm.generate(
                [vllm_request(self.processor, request, clip) for request, clip in chunk], sampling
            )
        except Exception as exc:  # an engine error fails this chunk, not the run
            for request, _ in chunk:
                yield self._emit(
                    Response(request.uid, status="failed", error=f"{type(exc).__name__}: {exc}"), on_response
                )
            return
        elapsed = (time.perf_counter() - start) / len(chunk)
        for (request, clip), output in zip(chunk, outputs, strict=True):
            response = Response(
                request.uid,
                [completion.text for completion in output.outputs],
                prompt_tokens=len(output.prompt_token_ids or []),
                video=video_summary(clip) if clip is not None else None,
                seconds=elapsed,
            )
            yield self._emit(response, on_response)
