"""Greedy answers of the same checkpoint through several backends, compared query by query.

Give eval run folders (``vtg-data eval --model CKPT --backend hf|vllm|openai ... --out DIR``, the
same data, prompt, frames and max tokens); the first is the reference. Prints, per other run, how
many answers are identical, the mIoU of each run, and for every difference whether the frames were
the same and how far apart the two diverging tokens are under the reference model (a near-tie is
float order; a wide gap is another model). ``--json`` writes the same as one JSON object.

    python benchmarks/vllm_parity.py runs/hf runs/served runs/engine --model CKPT \\
        --data normalized/synthetic/test.parquet --video-root videos
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="eval run folders; the first is the reference")
    parser.add_argument("--model", required=True, help="the checkpoint the runs answered with")
    parser.add_argument("--data", required=True, type=Path, help="the table the runs answered")
    parser.add_argument("--video-root", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    args = parser.parse_args()

    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.lvlm.parity import compare_runs, divergence_margin
    from vtg_data.stages.evaluate_model import ModelEvalConfig, build_request, load_rows
    from vtg_data.video import SamplingPolicy, sample_frames

    reference = args.runs[0]
    card = json.loads((reference / "metrics.json").read_text())["card"]
    policy = SamplingPolicy(**card["sampling"])
    cfg = ModelEvalConfig(model=args.model, data=(args.data,), out=reference, prompt=card["prompt"]["name"],
                          policy=policy, video_root=args.video_root)  # fmt: skip
    rows = {row["uid"]: row for row in load_rows(cfg)}
    backend = None
    report = {"reference": str(reference), "runs": []}
    mious = {
        str(run): json.loads((run / "metrics.json").read_text())["metrics"].get("mIoU") for run in args.runs
    }
    print(f"| run | backend | identical to {reference.name} | mIoU |")
    print("|---|---|---|---|")
    ref_backend = card["model"]["backend"]
    print(f"| {reference.name} | {ref_backend} | (reference) | {mious[str(reference)]} |")
    for run in args.runs[1:]:
        comparison = compare_runs(reference, run, run.name)
        explained = []
        for difference in comparison.differing:
            backend = backend or HFBackend(args.model)
            request = build_request(rows[difference["uid"]], cfg)
            margin = divergence_margin(backend, request, sample_frames(request.video, policy),
                                       difference["reference"], difference["other"])  # fmt: skip
            explained.append(difference | {"margin": margin})
        run_backend = json.loads((run / "metrics.json").read_text())["card"]["model"]["backend"]
        print(f"| {run.name} | {run_backend} | {comparison.identical}/{comparison.total} "
              f"({100 * comparison.share:.1f}%) | {mious[str(run)]} |")  # fmt: skip
        report["runs"].append({"run": str(run), "backend": run_backend, "identical": comparison.identical,
                               "total": comparison.total, "differences": explained})  # fmt: skip
    for entry in report["runs"]:
        for difference in entry["differences"]:
            margin = difference["margin"]
            kind = "near-tie (float order)" if margin["near_tie"] else "NOT a near-tie"
            print(f"- {Path(entry['run']).name} {difference['uid']}: same frames {difference['same_frames']}; "
                  f"token {margin['token']}: {margin['reference_token']!r} vs {margin['other_token']!r}, "
                  f"log-probability gap {margin['gap']:.5f}: {kind}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
