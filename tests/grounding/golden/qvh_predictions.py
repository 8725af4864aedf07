"""Deterministic moment_detr-style predictions for a QVHighlights ground-truth file.

Stdlib only (``random.Random`` is stable across Python versions), so the golden metrics made by
``make_qvh_golden.py`` stay valid. The predictions mix near hits, loose hits, misses, score ties,
more than 10 windows and a single window, to exercise every branch of the metrics.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def make_predictions(gt_path: Path, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    predictions = []
    for line in Path(gt_path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        duration = float(record["duration"])
        windows = []
        count = rng.choice([1, 3, 10, 12])
        for k in range(count):
            if k < len(record.get("relevant_windows", [])) and rng.random() < 0.7:
                s, e = record["relevant_windows"][k]
                jitter = rng.choice([0.5, 2.0, 6.0, 15.0])
                s, e = s + rng.gauss(0, jitter), e + rng.gauss(0, jitter)
            else:
                s = rng.uniform(0, duration)
                e = s + rng.uniform(2, 40)
            s, e = sorted((min(max(s, 0.0), duration), min(max(e, 0.0), duration)))
            if e - s < 0.5:
                e = min(duration, s + 2.0)
                s = max(0.0, e - 2.0)
            score = round(rng.choice([rng.random(), 0.5]), 4)  # some exact ties
            windows.append([round(s, 1), round(e, 1), score])
        predictions.append({"qid": record["qid"], "vid": record["vid"], "pred_relevant_windows": windows})
    return predictions


def write_predictions(gt_path: Path, out: Path, seed: int = 0) -> Path:
    out.write_text("".join(json.dumps(p) + "\n" for p in make_predictions(gt_path, seed)))
    return out
