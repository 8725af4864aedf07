"""A simulated teacher for the demo: TVG-R1-format traces whose windows are systematically too
wide (``widen`` seconds each side) and noisy. It stands in for an LVLM annotator with a known
bias, so the demo can show what RL on the ground truth does to a biased cold start. Everything it
writes is labelled simulated.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from vtg_data.grounding.answer import fmt, time_answer
from vtg_data.grounding.metrics import iou


def simulated_window(
    window, duration: float, rng: random.Random, widen: float, noise: float
) -> tuple[float, float]:
    s = max(0.0, window[0] - widen + rng.gauss(0, noise))
    e = min(duration, window[1] + widen + rng.gauss(0, noise))
    s, e = round(min(s, e), 1), round(max(s, e), 1)
    return s, max(e, round(s + 0.1, 1))


def write_simulated_traces(
    rows: list[dict], out: Path, *, widen: float = 2.0, noise: float = 0.5, seed: int = 0
) -> dict[str, float]:
    """Write ``{uid, response, teacher}`` JSONL for ``rows``; returns each label's IoU with the truth
    by uid (their mean is the teacher's mIoU)."""
    rng = random.Random(seed)
    ious = {}
    lines = []
    for row in sorted(rows, key=lambda r: r["uid"]):
        s, e = simulated_window(row["windows"][0], row["duration"], rng, widen, noise)
        ious[row["uid"]] = iou((s, e), row["windows"][0])
        colour = row["query"].rstrip("?").split()[-1]
        response = f"<think>{colour} from {fmt(s)}s to {fmt(e)}s</think> {time_answer((s, e))}"
        lines.append(
            json.dumps(
                {
                    "uid": row["uid"],
                    "response": response,
                    "teacher": f"simulated(widen={widen}, noise={noise})",
                }
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return ious
