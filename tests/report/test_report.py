"""``inspect`` draws each kind of run's samples; ``report`` writes one self-contained page that a
real browser (headless Chromium) renders: not blank at desktop and phone widths, every section
heading in the DOM, no console messages; the HTML passes basic validity checks."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import polars as pl
import pytest

from vtg_data.report.inspect import _lanes, inspect
from vtg_data.report.page import SECTIONS, report
from vtg_data.report.runs import open_run, samples

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def runs(synthetic_root, tiny_model, tmp_path_factory):
    """A cold-start, a difficulty, an RL, an eval and a training run on the synthetic corpus."""
    from vtg_data.lvlm import GenerationParams
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.lvlm.scripted import ScriptedBackend
    from vtg_data.lvlm.templates import gt_template_teacher
    from vtg_data.stages.coldstart import ColdstartConfig, build_coldstart
    from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
    from vtg_data.stages.evaluate_model import ModelEvalConfig, run_model_eval
    from vtg_data.stages.rlset import RLConfig, build_rl
    from vtg_data.train.options import TrainData
    from vtg_data.train.sft import SFTConfig, train_sft
    from vtg_data.video import SamplingPolicy

    base = tmp_path_factory.mktemp("report-runs")
    table = synthetic_root / "normalized/synthetic/train.parquet"
    frames = SamplingPolicy(fps=1.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)
    build_coldstart(ColdstartConfig(data=(table,), out=base / "coldstart", teacher_sees_gt=True, k=2, shards=1),
                    teacher=ScriptedBackend(gt_template_teacher, "gt-template-teacher"))  # fmt: skip

    def policy(request, params):
        return [f"<think>At {i}s.</think> <time>[{i}, {i + 3}]</time>" for i in range(params.n)]

    score_difficulty(
        DifficultyConfig(data=(table,), out=base / "difficulty", k=4, shards=1),
        backend=ScriptedBackend(policy, "p"),
    )
    build_rl(RLConfig(scores=base / "difficulty", out=base / "rl", policies=("partial-annotation", "nonzero-variance"),
                      partial_action="flag"))  # fmt: skip
    run_model_eval(ModelEvalConfig(model=str(tiny_model), data=(synthetic_root / "normalized/synthetic/test.parquet",),
                                   out=base / "eval", policy=frames, generation=GenerationParams(max_tokens=8),
                                   bootstrap=20), backend=HFBackend(tiny_model))  # fmt: skip
    train_sft(SFTConfig(model=str(tiny_model), data=TrainData(str(table), synthetic_root / "videos"), out=base / "sft",
                        prompt="compact", policy=frames, steps=3, batch_size=2, save_every=0, save_final=False,
                        workers=0))  # fmt: skip
    return base


@pytest.mark.parametrize("kind", ["table", "coldstart", "difficulty", "rl", "eval"])
def test_inspect_draws_every_kind_of_run(runs, synthetic_root, tmp_path, kind):
    source = synthetic_root / "normalized/synthetic/test.parquet" if kind == "table" else runs / kind
    run = open_run(source)
    assert run.kind == kind and run.video_root == synthetic_root / "videos"
    items = samples(run)
    assert items and all(s.video.is_file() for s in items)
    lanes = {label.split(" (")[0].rsplit(" ", 1)[0] if label.startswith("rollout") else label.split(" (")[0]
             for s in items for label, _ in _lanes(s)}  # fmt: skip
    expected = {"table": {"ground truth"}, "coldstart": {"ground truth", "teacher"},
                "difficulty": {"ground truth", "rollout"}, "rl": {"ground truth", "rollout"},
                "eval": {"ground truth", "prediction"}}[kind]  # fmt: skip
    assert lanes == expected
    paths = inspect(source, tmp_path, sample=2, seed=1)
    assert len(paths) == 2 and all(p.suffix == ".png" and p.stat().st_size > 5000 for p in paths)
    again = inspect(source, tmp_path / "uid", uids=[items[0].uid])
    assert again[0].name == items[0].uid.replace("/", "__") + ".png"


def test_inspect_shows_annotator_alternatives_and_a_missing_video(synthetic_root, tmp_path):
    table = pl.read_parquet(synthetic_root / "normalized/synthetic/test.parquet").head(2)
    table = table.with_columns(
        pl.col("windows").map_elements(lambda w: [w.to_list(), [[0.0, 1.0]]], return_dtype=pl.List(pl.List(pl.List(pl.Float64)))).alias("windows_alt"),
        pl.Series("video_path", ["gone.mp4", table["video_path"][1]]),
    )  # fmt: skip
    (tmp_path / "normalized/synthetic").mkdir(parents=True)
    path = tmp_path / "normalized/synthetic/test.parquet"
    table.write_parquet(path)
    shutil.copytree(synthetic_root / "videos", tmp_path / "videos")
    items = samples(open_run(path))
    assert [label for label, _ in _lanes(items[0])] == ["ground truth", "annotator 1", "annotator 2"]
    pictures = inspect(path, tmp_path / "out", uids=[items[0].uid, items[1].uid])
    assert all(p.is_file() for p in pictures)  # the missing video gives the timeline alone


class Checker(HTMLParser):
    """Basic validity: declared doctype and language, balanced elements, images with alt text, unique ids."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.ids, self.doctype, self.headings, self.images = (
            [],
            [],
            set(),
            False,
            [],
            0,
        )
        self._heading = None

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html" and not attrs.get("lang"):
            self.errors.append("html without lang")
        if tag == "img":
            self.images += 1
            if not attrs.get("alt"):
                self.errors.append("img without alt")
            if not attrs.get("src", "").startswith("data:image/png;base64,"):
                self.errors.append("img not embedded")
        if "id" in attrs:
            if attrs["id"] in self.ids:
                self.errors.append(f"duplicate id {attrs['id']}")
            self.ids.add(attrs["id"])
        if tag == "h2":
            self._heading = ""
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag == "h2":
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    sources = [runs / name for name in ("coldstart", "difficulty", "rl", "eval", "sft")]
    return report(sources, tmp_path_factory.mktemp("page") / "report.html")


def test_the_page_is_valid_self_contained_html_with_every_section(page, runs):
    text = page.read_text()
    checker = Checker()
    checker.feed(text)
    assert checker.doctype and not checker.errors and not checker.stack, checker.errors
    assert checker.headings == [title for _, title in SECTIONS]
    assert "http://" not in text and "https://" not in text  # nothing fetched from a network
    assert '<meta charset="utf-8">' in text and 'name="viewport"' in text
    # real content in each section: funnel rules, histograms, metrics, curves, three samples per run
    assert all(f">{rule}<" in text for rule in ("iou", "span", "leakage"))
    assert "mean IoU over rollouts, scored vs selected" in text and "R1@0.5" in text
    assert "partially annotated samples flagged" in text  # what the RL run's policies found
    assert "train sft" in text and "best sample" in text and "worst sample" in text
    assert "protocol vtg-data" in text  # the eval card says how its numbers were scored
    assert (
        checker.images >= 1 + 2 + 1 + 3 * 4
    )  # funnel, 2 histograms, curves, 3 strips for 4 runs with samples
    assert "No cold-start run given" not in text and "No training run given" not in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (CI installs Debian's chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_a_real_browser_renders_the_page(page, tmp_path, width):
    from PIL import Image

    shot = tmp_path / f"shot-{width}.png"
    flags = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", f"--window-size={width},2400"]  # fmt: skip
    done = subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert shot.is_file(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    image = Image.open(shot).convert("L")
    assert image.size == (width, 2400)
    low, high = image.getextrema()
    colours = len(image.getcolors(maxcolors=1 << 16) or [])
    assert high - low > 100 and colours > 50  # text, tables and pictures, not a blank page
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    for section_id, title in SECTIONS:
        assert f'id="{section_id}"' in dom and f"<h2>{title}</h2>" in dom


def test_an_ablation_run_set_is_one_comparison_with_its_intervals(tmp_path):
    """Recipe arms from ``benchmarks/paper_findings.py --out``: per-arm mIoU per seed and each
    finding's gain with both intervals and a verdict, drawn."""
    import json
    import random

    rng = random.Random(0)
    lines = []
    for seed in (0, 1, 2):
        base = [rng.uniform(0.3, 0.7) for _ in range(40)]
        ious = {"A": base, "B": [v + 0.10 + rng.uniform(-0.02, 0.02) for v in base],  # B clearly above A
                "C": [v + 0.10 + rng.uniform(-0.02, 0.02) for v in base],  # C level with B
                "D": [v + 0.20 + rng.uniform(-0.02, 0.02) for v in base]}  # D clearly above B  # fmt: skip
        lines.append({"seed": seed, "threads": 2, "ious": ious, "rl_sets": {"B": 50, "C": 50, "D": 50},
                      "held_out_mIoU": {arm: sum(v) / len(v) for arm, v in ious.items()}})  # fmt: skip
    runs = tmp_path / "findings.jsonl"
    runs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = report([runs], tmp_path / "page.html").read_text()
    checker = Checker()
    checker.feed(text)
    assert not checker.errors and checker.images == 1  # the findings chart
    assert "No ablation run set given" not in text and "seed 2 (2 threads)" in text
    rows = {cells[0]: cells for cells in (
        [c.strip() for c in row.split("</td><td")] for row in text.split("<tr><td>")[1:])}  # fmt: skip
    assert "reproduced" in rows["RL after SFT"][-1]
    assert "not reproduced" in rows["difficulty control"][-1]
    assert "reversed" in rows["cold-start curation"][-1]
    with pytest.raises(ValueError, match="not a JSONL of recipe arms"):
        other = tmp_path / "other.jsonl"
        other.write_text('{"a": 1}\n')
        report([other], tmp_path / "x.html")
