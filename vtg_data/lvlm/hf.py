"""The transformers backend: any ``AutoModelForImageTextToText`` whose processor takes videos
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL families and others with the same processor contract).

What it does that a plain ``generate`` loop does not:

- Each video is decoded once for all the requests on it (requests are grouped by video), resized
  in the decoder to the model's patch grid, optionally through a frame cache.
- The processor gets the real timing: ``VideoMetadata`` with the native fps, the native frame
  count and the indices of the frames taken, so Qwen2.5-VL's ``second_per_grid_ts`` and Qwen3-VL's
  timestamps are the true ones.
- The n samples of one prompt share one prefill: the prompt (mostly video tokens) is computed
  once, its cache is repeated n times, and decoding continues from there. HF's own
  ``num_return_sequences`` repeats the prompt n times before the prefill.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vtg_data.lvlm.base import (
    BackendIdentity,
    GenerationParams,
    InferenceBackend,
    Request,
    Response,
    video_summary,
)
from vtg_data.lvlm.grouping import batches_by_video
from vtg_data.lvlm.positions import use_reference_positions
from vtg_data.lvlm.sampling import (
    SeededSampler,
    checkpoint_sampling,
    generation_config,
    neutral_generation_defaults,
    rollout_seed,
    warn_ignored,
)
from vtg_data.video import FrameCache


def local_revision(folder: Path) -> str:
    """A revision for a local model folder: config and weight files' names and sizes, hashed."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in {".json", ".safetensors", ".bin"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return "local-" + digest.hexdigest()[:12]


def is_adapter_folder(path: str | Path) -> bool:
    """A LoRA checkpoint: peft's adapter files without a full model config."""
    folder = Path(str(path))
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model a LoRA adapter folder was trained on, as its ``adapter_config.json`` names it."""
    import json

    base = json.loads((Path(str(path)) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}/adapter_config.json does not name its base model (base_model_name_or_path)")
    return base


def load_model(path: str | Path, *, trainable_adapter: bool = False, **load):
    """A full model folder or hub id, or a LoRA adapter folder over its recorded base model.

    An adapter is merged into its base for inference (no per-token adapter overhead); with
    ``trainable_adapter`` it stays a trainable ``PeftModel`` (resuming LoRA training). Qwen2-VL and
    Qwen2.5-VL get the multimodal positions they were trained with (``lvlm.positions``).
    """

    from transformers import AutoModelForImageTextToText

    if not is_adapter_folder(path):
        model = AutoModelForImageTextToText.from_pretrained(str(path), **load)
        use_reference_positions(model)
        return model
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ImportError(
            f"{path} is a LoRA adapter; loading it needs peft (pip install 'vtg-data[train]')"
        ) from error
    load = {k: v for k, v in load.items() if k != "revision"}  # the revision is the adapter's, not the base's
    base = AutoModelForImageTextToText.from_pretrained(adapter_base(path), **load)
    use_reference_positions(base)
    adapted = PeftModel.from_pretrained(base, str(path), is_trainable=trainable_adapter)
    return adapted if trainable_adapter else adapted.merge_and_unload()


def decoded_frame_kwargs(processor) -> dict:
    """Processor options for frames decoded by this toolkit: already sampled, already resized to
    the patch grid (and so nothing to cap), so the processor must take them as they are."""
    kwargs = {"do_sample_frames": False, "do_resize": False}
    valid = getattr(processor.video_processor, "valid_kwargs", None)
    if valid is not None and "cap_pixels_per_frame" in getattr(valid, "__annotations__", {}):
        kwargs["cap_pixels_per_frame"] = False
    return kwargs


def video_metadata(clip):
    """The processor's ``VideoMetadata`` of a decoded clip: native fps, frame count and the indices
    taken, so the model's time embedding is the clip's real timing."""
    from transformers.video_utils import VideoMetadata

    plan = clip.plan
    return VideoMetadata(
        total_num_frames=plan.native_frames,
        fps=plan.native_fps,
        width=plan.width,
        height=plan.height,
        duration=plan.duration,
        video_backend=clip.backend,
        frames_indices=list(plan.indices),
    )


def processor_inputs(processor, batch: Sequence[tuple[Request, object]]):
    """Processor inputs (CPU tensors) for a batch of (request, clip); the chat template adds the
    video tokens. Needs only the processor, so data-loading workers can run it."""
    texts = [
        processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        for request, _ in batch
    ]
    clips = [clip for _, clip in batch if clip is not None]
    kwargs = {}
    if clips:
        if len(clips) != len(batch):
            raise ValueError("a batch mixes requests with and without video")
        kwargs = {
            "videos": [clip.frames for clip in clips],
            "video_metadata": [video_metadata(clip) for clip in clips],
            **decoded_frame_kwargs(processor),
        }
    return processor(text=texts, return_tensors="pt", padding=True, **kwargs)


def rope_owner(model):
    """The module that caches ``rope_deltas`` (Qwen-VL's position offset after the video), found
    through any wrapper (peft, accelerate, DDP), or None for models without one."""
    for module in model.modules():
        if "rope_deltas" in vars(module):
            return module
    return None


class HFBackend(InferenceBackend):
    def __init__(
        self,
        model: str | Path,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 4,
        decode_backend: str = "auto",
        frame_cache: FrameCache | None = None,
        decode_timeout: float | None = 120.0,
        attn_implementation: str | None = None,
        trainable_adapter: bool = False,
    ):
        import torch
        from transformers import AutoProcessor

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs = {"revision": revision} if revision else {}
        processor = AutoProcessor.from_pretrained(str(model), **kwargs)
        load = {"dtype": dtype, **kwargs}
        if attn_implementation:
            load["attn_implementation"] = attn_implementation
        loaded = load_model(model, trainable_adapter=trainable_adapter, **load).to(device).eval()
        folder = Path(str(model))
        resolved = revision or getattr(loaded.config, "_commit_hash", None)
        if not resolved and folder.is_dir():
            resolved = local_revision(folder)
        self._setup(loaded, processor, BackendIdentity("hf", str(model), resolved or ""), device=device,
                    batch_size=batch_size, decode_backend=decode_backend, frame_cache=frame_cache,
                    decode_timeout=decode_timeout)  # fmt: skip

    @classmethod
    def from_loaded(cls, model, processor, identity: BackendIdentity, **options) -> HFBackend:
        """A backend around a model and processor already in memory (benchmarks, trainers)."""
        backend = cls.__new__(cls)
        backend._setup(model, processor, identity, device=str(model.device), **options)
        return backend

    def _setup(
        self,
        model,
        processor,
        identity: BackendIdentity,
        *,
        device: str,
        batch_size: int = 4,
        decode_backend: str = "auto",
        frame_cache: FrameCache | None = None,
        decode_timeout: float | None = 120.0,
    ) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.identity = identity
        self.device = device
        self.batch_size = batch_size
        self.decode_backend = decode_backend
        self.frame_cache = frame_cache
        self.decode_timeout = decode_timeout
        self.decoded_by: Counter = Counter()  # clips per decoder that served them (--decoder auto)
        # a model sharded over processes (FSDP) needs every process in each decoding step, until all
        # have finished; trainers set this
        self.synced_gpus = False
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is None:
            raise ValueError(
                f"{identity.model}: the processor has no video processor; this backend needs a video model"
            )
        self.patch = video_processor.patch_size * getattr(video_processor, "merge_size", 1)
        self.temporal_patch = getattr(video_processor, "temporal_patch_size", 1)
        # what the checkpoint's generation config would have changed, had it been inherited
        self.checkpoint_sampling = checkpoint_sampling(getattr(model, "generation_config", None))
        # the positions the checkpoint was trained with, whoever loaded the model
        self.positions = use_reference_positions(model)
        tokenizer = self.processor.tokenizer
        # A sampled <|video_pad|> would break the next forward on the completion ("video features and
        # video tokens do not match"): never generate special tokens other than the end of turn.
        self.suppress_tokens = sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})

    # -----------------------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        """Group by video, decode each video once, run prompts in batches of ``batch_size``."""
        for item in batches_by_video(
            requests, batch_size=self.batch_size, patch=self.patch, temporal_patch=self.temporal_patch,
            decode_backend=self.decode_backend, frame_cache=self.frame_cache, decode_timeout=self.decode_timeout,
            decoded_by=self.decoded_by,
        ):  # fmt: skip
            if isinstance(item, Response):
                yield self._emit(item, on_response)
            else:
                yield from self._run_batch(item, params, on_response)

    def metadata(self, clip):
        return video_metadata(clip)

    def prepare(self, batch: list[tuple[Request, object]]):
        """Processor inputs for a batch of (request, clip), on the model's device."""
        return processor_inputs(self.processor, batch).to(self.device)

    def _run_batch(self, batch, params: GenerationParams, on_response) -> Iterator[Response]:
        start = time.perf_counter()
        with_video = [item for item in batch if item[1] is not None]
        without = [item for item in batch if item[1] is None]
        for part in (with_video, without):
            if not part:
                continue
            try:
                texts, prompt_tokens = self.sample(part, params)
            except Exception as exc:  # an out-of-memory or model error fails these requests, not the run
                for request, _ in part:
                    yield self._emit(
                        Response(request.uid, status="failed", error=f"{type(exc).__name__}: {exc}"),
                        on_response,
                    )
                continue
            elapsed = (time.perf_counter() - start) / len(part)
            for (request, clip), outputs, tokens in zip(part, texts, prompt_tokens, strict=True):
                response = Response(
                    request.uid, outputs, prompt_tokens=tokens, seconds=elapsed,
                    video=video_summary(clip) if clip is not None else None,
                )  # fmt: skip
                yield self._emit(response, on_response)

    def sample(self, batch, params: GenerationParams) -> tuple[list[list[str]], list[int]]:
        """n completions for each prompt of the batch, with one shared prefill per prompt."""
        new_tokens, prompt_tokens = self.generate_ids(batch, params)
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        n = params.n
        return [decoded[i * n : (i + 1) * n] for i in range(len(batch))], prompt_tokens

    def generate_ids(self, batch, params: GenerationParams):
        """The generated token ids (n rows per prompt, padded after the end of turn) and the
        prompt lengths; ``sample`` decodes them, trainers score them."""
        return self.generate_from_inputs(self.prepare(batch), [request.uid for request, _ in batch], params)

    def generate_from_inputs(self, inputs, uids: Sequence[str], params: GenerationParams):
        """``generate_ids`` on processor inputs already made (left-padded, on the device): trainers
        prepare prompts ahead in their data-loading workers.

        The distribution is exactly ``params`` (``lvlm.sampling``): the checkpoint's generation
        config is hidden during the call, and each (prompt, rollout) row draws its tokens from its
        own generator seeded by ``params.seed``, the prompt's uid and the rollout index.
        """
        from transformers import LogitsProcessorList

        torch = self.torch
        inputs = dict(inputs)
        ids = inputs.pop("input_ids")
        mask = inputs.pop("attention_mask")
        token_types = inputs.pop("mm_token_type_ids", None)
        prompt_tokens = mask.sum(dim=1).tolist()
        n = params.n
        warn_ignored(self.identity.model, self.checkpoint_sampling, params)
        config = generation_config(params, pad_token_id=self.processor.tokenizer.pad_token_id,
                                   suppress_tokens=self.suppress_tokens)  # fmt: skip
        extra = {}
        if not params.greedy:
            seeds = [rollout_seed(params.seed, uid, j) for uid in uids for j in range(n)]
            extra["logits_processor"] = LogitsProcessorList([SeededSampler(params, seeds)])
        if self.synced_gpus:
            extra["synced_gpus"] = True
        # FSDP's gathered-parameter buffers outlive this call: inference tensors would break training
        grad = torch.no_grad() if self.synced_gpus else torch.inference_mode()
        with grad, neutral_generation_defaults(self.model):
            inner = rope_owner(self.model)
            if inner is not None:
                inner.rope_deltas = None  # positions of the previous batch must not leak in
            prefix = {"input_ids": ids[:, :-1], "attention_mask": mask[:, :-1], **inputs}
            if token_types is not None:
                prefix["mm_token_type_ids"] = token_types[:, :-1]
            prefill = self.model(**prefix, use_cache=True)
            # transformers 5 names the cache ``cache``; 4.x called it ``past_key_values``
            cache_name = (
                "cache" if "cache" in getattr(prefill, "__dataclass_fields__", {}) else "past_key_values"
            )
            cache = getattr(prefill, cache_name)
            if n > 1:
                cache.batch_repeat_interleave(n)
                if inner is not None and getattr(inner, "rope_deltas", None) is not None:
                    inner.rope_deltas = inner.rope_deltas.repeat_interleave(n, dim=0)
            output = self.model.generate(
                input_ids=ids.repeat_interleave(n, dim=0),
                attention_mask=mask.repeat_interleave(n, dim=0),
                generation_config=config,
                **{cache_name: cache},
                **extra,
            )
        return output[:, ids.shape[1] :], prompt_tokens

    def backend_notes(self) -> dict:
        notes = {"checkpoint_generation_config_ignored": self.checkpoint_sampling,
                 "clips_by_decoder": dict(self.decoded_by)}  # fmt: skip
        if self.positions:
            notes["positions"] = self.positions
        return notes

    def close(self) -> None:
        del self.model
