"""Publishing: builders, the hub folder and its card, push-to-hub against a loopback Hub, exports."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.hub.builders import builder_names, load_builder
from vtg_data.hub.layout import HubBuildConfig, HubBuildError, build_hub_folder

pytest.importorskip("datasets")
from fakehub import FakeHub  # noqa: E402

from vtg_data.hub.publish import PublishError, publish_folder  # noqa: E402


@pytest.fixture(scope="module")
def runs(synthetic_root, tmp_path_factory):
    """A cold-start run and an RL run on the synthetic corpus, made with the scripted teacher/policy."""
    from vtg_data.lvlm.scripted import ScriptedBackend
    from vtg_data.lvlm.templates import gt_template_teacher
    from vtg_data.stages.coldstart import ColdstartConfig, build_coldstart
    from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
    from vtg_data.stages.rlset import RLConfig, build_rl

    base = tmp_path_factory.mktemp("runs")
    data = (synthetic_root / "normalized/synthetic",)
    build_coldstart(ColdstartConfig(data=data, out=base / "coldstart", teacher_sees_gt=True, shards=2),
                    teacher=ScriptedBackend(gt_template_teacher, "gt-template-teacher"))  # fmt: skip

    def policy(request, params):
        return [f"<think>At {i}s.</think> <time>[{i}, {i + 3}]</time>" for i in range(params.n)]

    score_difficulty(
        DifficultyConfig(data=data, out=base / "scores", k=4, shards=2),
        backend=ScriptedBackend(policy, "policy"),
    )
    build_rl(RLConfig(scores=base / "scores", out=base / "rl", policies=("nonzero-variance",)))
    return base


def test_every_shipped_builder_loads():
    assert set(builder_names()) == {"tvg-coldstart", "tvg-rl", "tvg-bench"}
    for name in builder_names():
        spec = load_builder(name)
        assert spec.name == name and "uid" in spec.columns
    with pytest.raises(ValueError, match="unknown builder"):
        load_builder("tvg-nothing")


def sections(card: str) -> dict[str, str]:
    body = card.split("---", 2)[2]
    parts = re.split(r"^## (.+)$", body, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


@pytest.mark.parametrize("builder", ["tvg-coldstart", "tvg-rl", "tvg-bench"])
def test_hub_folder_card_is_complete_and_its_yaml_validates(runs, synthetic_root, tmp_path, builder):
    from huggingface_hub import DatasetCard

    source = {
        "tvg-coldstart": runs / "coldstart",
        "tvg-rl": runs / "rl",
        "tvg-bench": synthetic_root / "normalized/synthetic",
    }[builder]
    folder = build_hub_folder(
        HubBuildConfig(builder, (source,), tmp_path / "ds", repo="org/ds", version="1.2.3")
    )
    card = (tmp_path / "ds/README.md").read_text()
    header = yaml.safe_load(card.split("---", 2)[1])
    assert [c["config_name"] for c in header["configs"]] == list(folder.configs) and header["configs"][0][
        "default"
    ]
    assert DatasetCard(card).data.to_dict()["pretty_name"] == load_builder(builder).pretty_name
    found = sections(card)
    assert {"How to load", "Configs and splits", "Sources and licences", "How it was made", "Models and prompts",
            "Changelog"} <= set(found)  # fmt: skip
    assert all(text for text in found.values()), [name for name, text in found.items() if not text]
    assert 'revision="v1.2.3"' in card
    if builder == "tvg-coldstart":
        assert "Cold-start filter funnel" in found and "teacher: scripted:gt-template-teacher" in card
    if builder == "tvg-rl":
        assert "![mean IoU" in card and (tmp_path / "ds/difficulty_histogram.png").is_file()
    if builder == "tvg-bench":
        assert "Evaluation card" in found and set(folder.configs["all"]) == {"train", "test"}
    info = json.loads((tmp_path / "ds/vtg_data.json").read_text())
    assert info["version"] == "1.2.3" and info["schema_version"] == "1.0"


def test_missing_columns_and_empty_inputs_fail_before_anything_is_written(synthetic_root, runs, tmp_path):
    with pytest.raises(HubBuildError, match=r"lacks column\(s\) \['messages'"):
        build_hub_folder(HubBuildConfig("tvg-coldstart", (runs / "rl",), tmp_path / "a"))
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    table = pq.read_table(next((runs / "coldstart/data").glob("*.parquet")))
    pq.write_table(table.slice(0, 0), empty / "data/train-00000-of-00001.parquet")
    with pytest.raises(HubBuildError, match="no rows"):
        build_hub_folder(HubBuildConfig("tvg-coldstart", (empty,), tmp_path / "b"))
    with pytest.raises(HubBuildError, match="X.Y.Z"):
        HubBuildConfig("tvg-rl", (runs / "rl",), tmp_path / "c", version="1.0")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def load_at(hub, repo, revision, config, home):
    code = (
        "import json, sys\nfrom datasets import load_dataset, get_dataset_config_names\n"
        f"configs = get_dataset_config_names({repo!r}, revision={revision!r})\n"
        f"ds = load_dataset({repo!r}, {config!r}, revision={revision!r})\n"
        "print(json.dumps({'configs': configs, 'splits': {k: v.num_rows for k, v in ds.items()}, 'columns': ds[next(iter(ds))].column_names}))"
    )
    env = dict(
        os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home), HF_TOKEN="hf_test_token"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_push_tag_load_update_and_refuse(synthetic_root, runs, tmp_path, offline_hub_client):
    with FakeHub() as hub:
        v1 = build_hub_folder(
            HubBuildConfig(
                "tvg-bench",
                (synthetic_root / "normalized/synthetic",),
                tmp_path / "v1",
                repo="org/bench",
                version="1.0.0",
            )
        )
        first = publish_folder(v1.path, "org/bench", "1.0.0", endpoint=hub.url)
        assert (
            first.tag == "v1.0.0"
            and not first.unchanged
            and hub.repos["org/bench"].tags["v1.0.0"] == first.commit
        )
        loaded = load_at(hub, "org/bench", "v1.0.0", "synthetic", tmp_path / "home1")
        assert loaded["configs"] == ["all", "synthetic"] and loaded["splits"] == v1.configs["synthetic"]

        # v1.1.0: a second source appears; the synthetic shards are unchanged and not uploaded again
        other = tmp_path / "other/normalized/another"
        other.mkdir(parents=True)
        table = pq.read_table(synthetic_root / "normalized/synthetic/test.parquet")
        renamed = table.set_column(
            table.schema.get_field_index("source"), "source", [["another"] * table.num_rows]
        )
        uids = [u.replace("synthetic/", "another/") for u in table["uid"].to_pylist()]
        renamed = renamed.set_column(0, "uid", [uids])
        pq.write_table(renamed, other / "test.parquet")
        from vtg_data.hub.layout import changelog_of
        from vtg_data.hub.publish import remote_card

        history = changelog_of(remote_card("org/bench", endpoint=hub.url))
        assert history == ["v1.0.0: this release"]
        v2 = build_hub_folder(HubBuildConfig("tvg-bench", (synthetic_root / "normalized/synthetic", other), tmp_path / "v2",
                                             repo="org/bench", version="1.1.0", changelog=("a second source",),
                                             previous_changelog=tuple(history)))  # fmt: skip
        # the card keeps every published version's entry, newest first
        assert changelog_of((v2.path / "README.md").read_text()) == [
            "v1.1.0: a second source",
            "v1.0.0: this release",
        ]
        second = publish_folder(v2.path, "org/bench", "1.1.0", endpoint=hub.url)
        assert {p for p in second.unchanged if p.startswith("data/synthetic/")} == {
            p for p in v1.files if p.startswith("data/synthetic/")
        }
        assert all(not p.startswith("data/synthetic/") for p in second.uploaded)
        assert any(p.startswith("data/another/") for p in second.uploaded) and "README.md" in second.uploaded
        assert (
            load_at(hub, "org/bench", "v1.1.0", "all", tmp_path / "home2")["splits"]["test"]
            == 2 * table.num_rows
        )
        assert (
            load_at(hub, "org/bench", "v1.0.0", "all", tmp_path / "home3")["splits"]["test"] == table.num_rows
        )

        with pytest.raises(PublishError, match="tag v1.1.0 already exists"):
            publish_folder(v2.path, "org/bench", "1.1.0", endpoint=hub.url)


def test_an_interrupted_upload_resumes(runs, tmp_path, offline_hub_client):
    folder = build_hub_folder(HubBuildConfig("tvg-coldstart", (runs / "coldstart",), tmp_path / "ds", repo="org/cs",
                                             version="1.0.0", max_shard_rows=3))  # fmt: skip
    assert len([f for f in folder.files if f.endswith(".parquet")]) > 3
    with FakeHub() as hub:
        hub.fail_commits_after = 2
        with pytest.raises(Exception):  # noqa: B017 - the hub's 500, whatever type the client raises
            publish_folder(folder.path, "org/cs", "1.0.0", endpoint=hub.url, files_per_commit=1)
        assert "v1.0.0" not in hub.repos["org/cs"].tags  # no tag for a half upload
        hub.fail_commits_after = None
        resumed = publish_folder(folder.path, "org/cs", "1.0.0", endpoint=hub.url, files_per_commit=1)
        assert (
            len(resumed.unchanged) == 2 and len(resumed.uploaded) == len(folder.files) - 2
        )  # the 2 committed are kept
        distinct = {
            hashlib.sha256((folder.path / f).read_bytes()).hexdigest()
            for f in folder.files
            if f.endswith(".parquet")
        }
        assert hub.lfs_uploads == len(distinct)  # no object was sent twice across the two attempts
        assert "v1.0.0" in hub.repos["org/cs"].tags
        assert load_at(hub, "org/cs", "v1.0.0", "all", tmp_path / "home")["splits"] == folder.configs["all"]


def test_embedded_videos_and_cli_dry_run(runs, synthetic_root, tmp_path):
    result = CliRunner().invoke(app, ["push-to-hub", "tvg-coldstart", "--input", str(runs / "coldstart"), "--repo", "org/cs",
                                      "--version", "0.1.0", "--dry-run", "--out", str(tmp_path / "ds"), "--videos", "embed",
                                      "--video-root", str(synthetic_root / "videos")])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = (tmp_path / "ds/README.md").read_text()
    assert "dtype: video" in card and "Videos are embedded" in card
    table = pq.read_table(next((tmp_path / "ds/data/all").glob("*.parquet")))
    assert table.schema.field("video").type.get_field_index("bytes") == 0
    assert table["video"][0].as_py()["bytes"][4:8] == b"ftyp"
    refused = CliRunner().invoke(app, ["push-to-hub", "tvg-rl", "--input", str(runs / "coldstart"), "--repo", "o/r",
                                       "--version", "1.0.0", "--dry-run", "--out", str(tmp_path / "x")])  # fmt: skip
    assert (
        refused.exit_code != 0 and "no rl run here" not in refused.output and "lacks column" in refused.output
    )


@pytest.mark.parametrize(("user_setting", "bars_shown"), [(None, False), ("0", True)])
def test_piped_output_carries_no_library_progress_bars(runs, tmp_path, user_setting, bars_shown):
    """A piped command (CI logs, the demo in a file) prints no tqdm bars from datasets; a user who
    set HF_DATASETS_DISABLE_PROGRESS_BARS keeps their choice."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("DISABLE_PROGRESS_BARS")}
    if user_setting is not None:
        env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = user_setting
    command = [sys.executable, "-m", "vtg_data.cli", "push-to-hub", "tvg-coldstart", "--input", str(runs / "coldstart"),
               "--repo", "org/cs", "--version", "0.1.0", "--dry-run", "--out", str(tmp_path / "ds")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "load_dataset read it back" in done.stdout + done.stderr
    assert ("Generating train split" in done.stderr) is bars_shown
