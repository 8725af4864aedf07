"""Regenerate ``qvhighlights_val_mr_metrics.json`` with the official QVHighlights evaluator.

    python tests/grounding/golden/make_qvh_golden.py --moment-detr PATH/TO/moment_detr \
        --gt ../shared/corpora/qvhighlights/highlight_val_release.jsonl

PATH is a checkout of github.com/jayleicn/moment_detr (its ``standalone_eval`` package is
imported from there; nothing of it is kept in this repository).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from qvh_predictions import make_predictions  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moment-detr", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(args.moment_detr))
    from standalone_eval.eval import eval_moment_retrieval

    ground_truth = [json.loads(line) for line in args.gt.read_text().splitlines() if line.strip()]
    metrics = eval_moment_retrieval(make_predictions(args.gt, args.seed), ground_truth, verbose=False)
    out = HERE / "qvhighlights_val_mr_metrics.json"
    out.write_text(
        json.dumps({"seed": args.seed, "gt": args.gt.name, "metrics": metrics}, indent=1, sort_keys=True)
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
