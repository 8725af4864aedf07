"""Do two backends run the same model? Greedy answers of ``vtg-data eval`` runs compared query by
query, and every difference explained or not.

Two engines running the same weights on the same frames at the same positions agree on a greedy
answer except where two tokens are so close that the order of floating-point additions decides
(a near-tie). A difference is therefore checked three ways: were the frames and their times the
same (the answers' ``video`` records), and how far apart were the two diverging tokens under the
reference model (``divergence_margin``): a margin of a few thousandths is float order; more is
another model (a config read differently, a weight mapped differently, other positions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FRAME_FIELDS = ("frames", "fps", "first", "last", "width", "height")
NEAR_TIE = 0.01  # log-probability gap below which float order may pick either token


def load_predictions(folder: str | Path) -> dict[str, dict]:
    path = Path(folder) / "predictions.jsonl"
    return {record["uid"]: record for record in map(json.loads, path.read_text().splitlines())}


@dataclass
class Comparison:
    name: str
    total: int
    identical: int
    differing: list[dict] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.identical / self.total if self.total else 0.0


def same_frames(a: dict | None, b: dict | None) -> bool:
    """Both answers were given the same frames at the same times and size."""
    if not a or not b:
        return a == b
    return all(
        abs(float(a[k]) - float(b[k])) < 1e-6 if isinstance(a.get(k), float) else a.get(k) == b.get(k)
        for k in FRAME_FIELDS
    )


def compare_runs(reference: str | Path, other: str | Path, name: str) -> Comparison:
    """Query-by-query comparison of two eval run folders' first answers (uids of the reference)."""
    ours, theirs = load_predictions(reference), load_predictions(other)
    comparison = Comparison(name, 0, 0)
    for uid, record in ours.items():
        if record.get("status") != "ok" or theirs.get(uid, {}).get("status") != "ok":
            continue
        comparison.total += 1
        a, b = record["texts"][0], theirs[uid]["texts"][0]
        if a == b:
            comparison.identical += 1
            continue
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        comparison.differing.append({"uid": uid, "reference": a, "other": b, "first_difference": at,
                                     "same_frames": same_frames(record.get("video"), theirs[uid].get("video"))})  # fmt: skip
    return comparison


def divergence_margin(backend, request, clip, reference: str, other: str) -> dict:
    """Under ``backend``'s model (an ``HFBackend``), the log-probabilities of the two tokens where
    the answers part, after their common tokens; ``near_tie`` when the gap is float-order sized."""
    import torch

    tokenizer = backend.processor.tokenizer
    a = tokenizer(reference, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    b = tokenizer(other, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)) - 1)
    inputs = dict(backend.prepare([(request, clip)]))
    prefix = torch.tensor([a[:at]], dtype=inputs["input_ids"].dtype, device=inputs["input_ids"].device)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros_like(prefix)], dim=1
        )
    inner = next((m for m in backend.model.modules() if "rope_deltas" in vars(m)), None)
    if inner is not None:
        inner.rope_deltas = None
    with torch.no_grad():
        logprobs = torch.log_softmax(backend.model(**inputs).logits[0, -1].float(), dim=-1)
    gap = abs(float(logprobs[a[at]] - logprobs[b[at]]))
    return {"token": at, "reference_token": tokenizer.decode([a[at]]), "other_token": tokenizer.decode([b[at]]),
            "gap": round(gap, 6), "near_tie": gap < NEAR_TIE}  # fmt: skip
