"""``paper_findings.py --from-evals``: a findings line from real ``vtg-data eval`` runs of each arm,
which ``--summarize`` and the report read like the miniature's own lines."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from vtg_data.grounding.metrics import best_match
from vtg_data.lvlm import GenerationParams
from vtg_data.stages.evaluate_model import ModelEvalConfig, run_model_eval
from vtg_data.tables import load_rows
from vtg_data.video import SamplingPolicy

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
POLICY = SamplingPolicy(fps=1.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)


def test_a_line_from_each_arms_eval_run(synthetic_root, hf_backend, tmp_path):
    data = (synthetic_root / "normalized/synthetic/test.parquet",)
    for arm, prompt in (("A", "tvg_r1_think"), ("B", "time_only")):  # two arms that answer differently
        config = ModelEvalConfig(model="tiny", data=data, out=tmp_path / f"eval-{arm}", policy=POLICY,
                                 generation=GenerationParams(max_tokens=12), bootstrap=20, prompt=prompt)  # fmt: skip
        run_model_eval(config, backend=hf_backend)
    out = tmp_path / "findings.jsonl"
    script = [sys.executable, str(ROOT / "benchmarks/paper_findings.py")]
    done = subprocess.run([*script, "--from-evals", f"A={tmp_path / 'eval-A'}", f"B={tmp_path / 'eval-B'}",
                           "--seed", "3", "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(out.read_text())
    assert line["seed"] == 3 and set(line["ious"]) == {"A", "B"}
    truth = {row["uid"]: row["windows"] for row in load_rows(data, None, None)}
    for arm in ("A", "B"):
        records = [
            json.loads(x) for x in (tmp_path / f"eval-{arm}/predictions.jsonl").read_text().splitlines()
        ]
        expected = {r["uid"]: best_match(r["windows"][0], truth[r["uid"]])[0] if r.get("windows") else 0.0
                    for r in records if r["status"] == "ok"}  # fmt: skip
        assert line["ious"][arm] == [expected[uid] for uid in sorted(expected)]
        assert line["held_out_mIoU"][arm] == pytest.approx(statistics.fmean(line["ious"][arm]))
    summary = subprocess.run([*script, "--summarize", str(out)], capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "| RL after SFT | B vs A |" in summary.stdout and "one seed" in summary.stdout
