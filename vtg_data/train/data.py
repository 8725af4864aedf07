"""Training examples from published datasets, turned into model inputs with the video as video,
streamed: memory follows the batch and the prefetch depth, never the dataset.

- ``ExampleTable``: the rows, read on demand from the Arrow-backed ``datasets`` table (memory
  mapped), each turned into an ``Example`` only when a step asks for it.
- ``VideoInputs``: one example's model inputs, built exactly as evaluation builds them (the same
  frame sampling, ``VideoMetadata`` with the true timing, chat template; ``processor_inputs`` is
  ``HFBackend.prepare`` without the move to the device). Clips come through the on-disk frame cache
  shared with ``eval --model`` and ``score-difficulty``; nothing is kept in memory.
- ``PreparedExamples`` + ``StepBatches`` + ``step_loader``: a ``torch.utils.data.DataLoader`` whose
  batch sampler yields, step after step, this process's share of the step's examples (the seeded
  order of ``batch_indices``, so a resumed run replays the same batches whatever the number of
  workers); its worker processes decode and run the processor ahead of the step.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vtg_data.data_root import video_file
from vtg_data.grounding.answer import time_answer
from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm.base import Request
from vtg_data.lvlm.hf import processor_inputs
from vtg_data.video import DecodeError, FrameCache, SamplingPolicy, load_clips


@dataclass
class Example:
    uid: str
    source: str
    video: str
    messages: list[dict]  # the prompt: system and user (with a video part)
    answer: str | None  # the SFT target text
    windows: list[list[float]]
    duration: float


def _clean_messages(messages: list[dict]) -> list[dict]:
    """Messages as stored in Parquet (struct parts with nulls) -> chat-template parts."""
    clean = []
    for message in messages:
        parts = []
        for part in message["content"]:
            parts.append(
                {"type": "video"} if part["type"] == "video" else {"type": "text", "text": part["text"]}
            )
        clean.append({"role": message["role"], "content": parts})
    return clean


class ExampleTable(Sequence):
    """The examples of a dataset, built from its rows on access (the rows stay on disk, mapped).

    Rows with a ``messages`` column train on their assistant turn; others get the prompt template
    and a ``<time>[s, e]</time>`` answer from their ground-truth window.
    """

    def __init__(self, dataset, video_root: Path, prompt: str):
        self.dataset = dataset
        self.video_root = Path(video_root)
        self.template = get_prompt(prompt)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._example(self.dataset[int(index)])

    def __iter__(self) -> Iterator[Example]:
        for row in self.dataset:
            yield self._example(row)

    def uids(self, indices: Sequence[int]) -> list[str]:
        """The uids of some rows, read from the uid column alone."""
        return list(self.dataset.select_columns(["uid"])[list(indices)]["uid"])

    def _example(self, row: dict) -> Example:
        video = str(video_file(self.video_root, row["source"], row["video_path"]))
        if row.get("messages"):
            messages = _clean_messages(row["messages"])
            answer = (
                "".join(p["text"] for p in messages[-1]["content"])
                if messages[-1]["role"] == "assistant"
                else None
            )
            prompt_messages = [m for m in messages if m["role"] != "assistant"]
        else:
            prompt_messages = self.template.messages(row["query"])
            s, e = row["windows"][0]
            answer = time_answer((s, e))
        return Example(
            row["uid"], row["source"], video, prompt_messages, answer, row["windows"], row["duration"]
        )


def load_examples(
    data: str | Path,
    *,
    video_root: Path,
    revision: str | None = None,
    config: str = "all",
    split: str = "train",
    prompt: str = "tvg_r1_think",
    limit: int | None = None,
) -> ExampleTable:
    """The examples of a hub dataset (id + revision), a local hub-layout folder, a run's output
    folder or a normalized table; the first ``limit`` rows when given."""
    from datasets import load_dataset

    local = Path(str(data))
    if local.suffix == ".parquet" or (local.is_dir() and not (local / "README.md").is_file()):
        # a normalized table or a run's output: plain Parquet, no card
        files = (
            [str(local)] if local.suffix == ".parquet" else [str(p) for p in sorted(local.rglob("*.parquet"))]
        )
        dataset = load_dataset("parquet", data_files=files, split="train")
    else:
        dataset = load_dataset(str(data), config, split=split, revision=revision)
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"{data}: no rows in config {config!r}, split {split!r}")
    return ExampleTable(dataset, video_root, prompt)


class VideoInputs:
    """The model inputs of one example, as evaluation makes them; holds the processor and the
    sampling, never the model, so data-loading workers can build inputs."""

    def __init__(self, backend, policy: SamplingPolicy, frame_cache: FrameCache | None = None):
        self.processor = backend.processor
        self.decode_backend = backend.decode_backend
        self.decode_timeout = backend.decode_timeout
        self.policy = policy
        # the frames' policy: the model's patch grid and temporal patch, as the backends decode them
        self.clip_policy = replace(policy, patch=backend.patch, frame_multiple=backend.temporal_patch)
        self.frame_cache = frame_cache

    def request(self, example: Example) -> Request:
        return Request(example.uid, example.messages, example.video, self.policy)

    def clip(self, video: str):
        """The decoded frames of ``video`` (through the frame cache); DecodeError if it cannot be."""
        _, clip = next(iter(load_clips([video], self.clip_policy, backend=self.decode_backend,
                                       cache=self.frame_cache, timeout=self.decode_timeout)))  # fmt: skip
        if isinstance(clip, Exception):
            raise clip
        return clip

    def prompt(self, example: Example, clip=None) -> dict:
        """The prompt tensors of one example (batch of one, no padding, CPU), exactly as eval builds them."""
        clip = clip if clip is not None else self.clip(example.video)
        return dict(processor_inputs(self.processor, [(self.request(example), clip)]))

    def sft_example(self, example: Example, prompt: dict | None = None) -> dict:
        """Prompt + answer + end of turn, with labels on the answer tokens only."""
        prompt = prompt if prompt is not None else self.prompt(example)
        tokenizer = self.processor.tokenizer
        answer = tokenizer(
            example.answer + tokenizer.eos_token, add_special_tokens=False, return_tensors="pt"
        )["input_ids"][0]
        ids = torch.cat([prompt["input_ids"][0], answer])
        labels = torch.cat([torch.full_like(prompt["input_ids"][0], -100), answer])
        out = {
            k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")
        }
        out["input_ids"], out["labels"] = ids, labels
        if "mm_token_type_ids" in prompt:
            out["mm_token_type_ids"] = torch.cat([prompt["mm_token_type_ids"][0], torch.zeros_like(answer)])
        return out


# ---------------------------------------------------------------------------------------------
# The stream


@dataclass
class Prepared:
    """One example of a step, ready for the model."""

    index: int  # the example actually used (a damaged video's example is replaced by the next)
    example: Example
    prompt: dict  # prompt tensors, batch of one
    sft: dict | None = None  # prompt + answer with labels (SFT)
    clip: Any = None  # the decoded frames, kept only when asked (a vLLM engine decodes from them)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (uid, why) of damaged examples
    cache_hit: bool | None = None  # None: no frame cache


def _nbytes(prepared: Prepared) -> int:
    tensors = [*prepared.prompt.values(), *(prepared.sft or {}).values()]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class PreparedExamples(torch.utils.data.Dataset):
    """Map-style: index -> ``Prepared``. An example whose video cannot be decoded is skipped and
    recorded, and the next example of the table takes its place (the same one on every run, so a
    resume still replays the same batches); a stage never stops for one bad video.

    ``keep_bytes``: prepared examples kept for a later epoch, least recently used dropped first,
    at most this many bytes of tensors in each process; a constant, so memory stays bounded, and a
    dataset that fits is processed once, not once per epoch (0: none kept).
    """

    def __init__(self, table: ExampleTable, inputs: VideoInputs, *, sft: bool, keep_clip: bool = False,
                 keep_bytes: int = 0):  # fmt: skip
        self.table, self.inputs, self.sft, self.keep_clip = table, inputs, sft, keep_clip
        self.keep_bytes = 0 if keep_clip else keep_bytes  # frames are too large to keep
        self._kept: OrderedDict[int, Prepared] = OrderedDict()
        self._kept_bytes = 0

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> Prepared:
        if index in self._kept:
            self._kept.move_to_end(index)
            kept = self._kept[index]
            return replace(kept, skipped=[], cache_hit=None if kept.cache_hit is None else True)
        prepared = self._prepare(index)
        size = _nbytes(prepared)
        if self.keep_bytes and not prepared.skipped and size <= self.keep_bytes:
            self._kept[index] = prepared
            self._kept_bytes += size
            while self._kept_bytes > self.keep_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._kept_bytes -= _nbytes(dropped)
        return prepared

    def _prepare(self, index: int) -> Prepared:
        skipped: list[tuple[str, str]] = []
        for attempt in range(len(self.table)):
            current = (index + attempt) % len(self.table)
            example = self.table[current]
            cache = self.inputs.frame_cache
            hits = cache.hits if cache is not None else 0
            try:
                clip = self.inputs.clip(example.video)
            except DecodeError as exc:
                skipped.append((example.uid, str(exc)))
                continue
            prompt = self.inputs.prompt(example, clip)
            return Prepared(
                current, example, prompt, self.inputs.sft_example(example, prompt) if self.sft else None,
                clip if self.keep_clip else None, skipped, (cache.hits > hits) if cache is not None else None,
            )  # fmt: skip
        raise RuntimeError(f"no example's video could be decoded (first: {skipped[0][0]}: {skipped[0][1]})")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of an epoch: a function of (seed, epoch) only, so a resume replays it."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Examples of a step: consecutive slices of the per-epoch orders."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        out.append(epoch_order(n, seed, epoch)[offset])
    return out


class StepBatches(torch.utils.data.Sampler):
    """Steps ``start``..``last - 1`` of a seeded run: each step's examples (``batch_indices``), this
    process's share (``rank::world``). The sampler owns the order, so workers change nothing."""

    def __init__(
        self, n: int, per_step: int, seed: int, start: int, last: int, rank: int = 0, world: int = 1
    ):
        self.n, self.per_step, self.seed, self.start, self.last = n, per_step, seed, start, last
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.last):
            yield batch_indices(self.n, self.per_step, step, self.seed)[self.rank :: self.world]

    def __len__(self) -> int:
        return max(0, self.last - self.start)


def _worker_setup(_: int) -> None:
    """A data-loading worker: one thread (the trainer owns the cores), and it may start the
    decoder child process that isolates hangs (DataLoader workers are daemonic, and a daemonic
    process may not have children; this one is stopped with the worker)."""
    torch.set_num_threads(1)
    multiprocessing.current_process()._config["daemon"] = False


def _as_list(items: list) -> list:
    return items


@dataclass
class SFTStep:
    """One SFT step's share, collated in the worker: the micro-batches ready for the model (a few
    large tensors cross the process boundary, not a dozen small ones per example) and the examples
    without their tensors (uids, skips, cache use)."""

    parts: list[dict]
    items: list[Prepared]


class SFTCollator:
    def __init__(self, pad_id: int, micro_batch: int):
        self.pad_id, self.micro_batch = pad_id, micro_batch

    def __call__(self, items: list[Prepared]) -> SFTStep:
        size = self.micro_batch or max(len(items), 1)
        rows = [item.sft for item in items]
        parts = [collate(rows[start : start + size], self.pad_id) for start in range(0, len(rows), size)]
        return SFTStep(parts, [replace(item, prompt={}, sft=None) for item in items])


def step_loader(dataset: PreparedExamples, batches: StepBatches, workers: int = 2, prefetch: int = 2,
                collate_fn=None, start_method: str | None = None):  # fmt: skip
    """The steps' prepared examples (or what ``collate_fn`` makes of them), ``workers`` processes
    preparing up to ``prefetch`` steps each ahead (0 workers: prepared here when the step asks).
    ``start_method`` (``spawn``) starts the workers afresh instead of forking this process: needed
    beside threads a fork would copy mid-call (an in-process vLLM engine's)."""
    options: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": collate_fn or _as_list,
        "batch_sampler": batches,
    }
    if workers:
        options |= {"prefetch_factor": prefetch, "worker_init_fn": _worker_setup, "persistent_workers": False}
        if start_method:
            options["multiprocessing_context"] = multiprocessing.get_context(start_method)
    return torch.utils.data.DataLoader(dataset, **options)


# ---------------------------------------------------------------------------------------------
# Batches


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad token rows; concatenate the video tensors."""
    length = max(item["input_ids"].shape[0] for item in items)
    batch = {"input_ids": [], "attention_mask": [], "labels": [], "mm_token_type_ids": []}
    for item in items:
        n = item["input_ids"].shape[0]
        pad = length - n
        batch["input_ids"].append(
            torch.cat([item["input_ids"], torch.full((pad,), pad_id, dtype=torch.long)])
        )
        batch["attention_mask"].append(
            torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(pad, dtype=torch.long)])
        )
        batch["labels"].append(torch.cat([item["labels"], torch.full((pad,), -100, dtype=torch.long)]))
        if "mm_token_type_ids" in item:
            batch["mm_token_type_ids"].append(
                torch.cat(
                    [item["mm_token_type_ids"], torch.zeros(pad, dtype=item["mm_token_type_ids"].dtype)]
                )
            )
    out = {k: torch.stack(v) for k, v in batch.items() if v}
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        if key in items[0]:
            out[key] = torch.cat([item[key] for item in items])
    return out


VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def left_pad(prompts: list[dict], pad_id: int) -> dict:
    """Prompts of one example each -> one left-padded batch, as the processor pads for generation."""
    length = max(p["input_ids"].shape[1] for p in prompts)
    out: dict[str, Any] = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("mm_token_type_ids", 0)):
        if key in prompts[0]:
            out[key] = torch.cat([
                torch.cat([torch.full((1, length - p[key].shape[1]), fill, dtype=p[key].dtype), p[key]], dim=1)
                for p in prompts
            ])  # fmt: skip
    for key in VIDEO_KEYS:
        if key in prompts[0]:
            out[key] = torch.cat([p[key] for p in prompts])
    return out
