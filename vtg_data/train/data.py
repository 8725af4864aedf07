"""Training examples from published datasets, turned into model inputs with the video as video.

Rows come from ``datasets.load_dataset`` (a hub id with a revision, or a local hub-layout folder).
Prompts are built by the same ``HFBackend.prepare`` that evaluation uses: the same frame sampling,
the same ``VideoMetadata`` (true timing), the same chat template. Each example is prepared once
(videos decoded once) and kept as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm.base import Request
from vtg_data.lvlm.hf import HFBackend
from vtg_data.lvlm.templates import fmt
from vtg_data.video import SamplingPolicy, load_clips


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


def load_examples(
    data: str | Path,
    *,
    video_root: Path,
    revision: str | None = None,
    config: str = "all",
    split: str = "train",
    prompt: str = "tvg_r1_think",
    limit: int | None = None,
) -> list[Example]:
    """Rows with a ``messages`` column train on their assistant turn; others get the prompt
    template and a ``<time>[s, e]</time>`` answer from their ground-truth window."""
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
    template = get_prompt(prompt)
    examples = []
    for row in dataset:
        video = str(Path(video_root) / row["source"] / row["video_path"])
        if row.get("messages"):
            messages = _clean_messages(row["messages"])
            answer = (
                "".join(p["text"] for p in messages[-1]["content"])
                if messages[-1]["role"] == "assistant"
                else None
            )
            prompt_messages = [m for m in messages if m["role"] != "assistant"]
        else:
            prompt_messages = template.messages(row["query"])
            s, e = row["windows"][0]
            answer = f"<time>[{fmt(s)}, {fmt(e)}]</time>"
        examples.append(
            Example(
                row["uid"], row["source"], video, prompt_messages, answer, row["windows"], row["duration"]
            )
        )
        if limit and len(examples) >= limit:
            break
    if not examples:
        raise ValueError(f"{data}: no rows in config {config!r}, split {split!r}")
    return examples


class VideoInputs:
    """Per-example model inputs, prepared once and cached: prompt tensors and, for SFT, labels."""

    def __init__(self, backend: HFBackend, policy: SamplingPolicy):
        self.backend = backend
        self.policy = policy
        self.clips: dict[str, object] = {}
        self.prompts: dict[str, dict] = {}

    def clip(self, video: str):
        if video not in self.clips:
            policy = SamplingPolicy(**{**self.policy.__dict__, "patch": self.backend.patch,
                                       "frame_multiple": self.backend.temporal_patch})  # fmt: skip
            _, clip = next(iter(load_clips([video], policy, backend=self.backend.decode_backend)))
            if isinstance(clip, Exception):
                raise clip
            self.clips[video] = clip
        return self.clips[video]

    def request(self, example: Example) -> Request:
        return Request(example.uid, example.messages, example.video, self.policy)

    def prompt(self, example: Example) -> dict:
        """The prompt tensors of one example (batch of one, no padding), exactly as eval builds them."""
        if example.uid not in self.prompts:
            inputs = self.backend.prepare([(self.request(example), self.clip(example.video))])
            self.prompts[example.uid] = {k: v.cpu() for k, v in inputs.items()}
        return self.prompts[example.uid]

    def sft_example(self, example: Example) -> dict:
        """Prompt + answer + end of turn, with labels on the answer tokens only."""
        prompt = self.prompt(example)
        tokenizer = self.backend.processor.tokenizer
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
