"""The hub-layout folder of a published dataset: Parquet shards + a README card whose YAML
declares the configs (``datasets`` no longer runs loading scripts).

    README.md                                   the card, rendered from the runs' manifests
    vtg_data.json                               schema version, toolkit version, builder, counts
    data/<config>/<split>-XXXXX-of-NNNNN.parquet  shards, rows sorted by uid, bounded size
    difficulty_histogram.png                    (RL sets) the before/after plot

Everything is checked before anything is written or uploaded: the builder's columns exist in
every input table, no config or split is empty, embedded videos exist. The folder is then read
back with ``datasets.load_dataset`` and the row counts compared.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from vtg_data import __version__
from vtg_data.corpora import REGISTRY
from vtg_data.data_root import video_file
from vtg_data.hub.builders import BuilderSpec, load_builder
from vtg_data.schema import SCHEMA_VERSION
from vtg_data.stats import query_tables

VERSION = re.compile(r"^\d+\.\d+\.\d+$")
VIDEO_MODES = ("path", "embed")


class HubBuildError(ValueError):
    """A dataset that cannot be published as asked; nothing was uploaded."""


@dataclass(frozen=True)
class HubBuildConfig:
    builder: str
    inputs: tuple[Path, ...]
    out: Path
    repo: str = "your-org/dataset"
    version: str = "0.1.0"
    videos: str = "path"
    video_root: Path | None = None  # folder with <source>/<video_path>, e.g. <root>/videos
    max_shard_rows: int = 50_000
    changelog: tuple[str, ...] = ()
    verify: bool = True
    # the entries of the versions published before (read from the repo's current card): the card
    # keeps every version's entry, newest first
    previous_changelog: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not VERSION.match(self.version):
            raise HubBuildError(f"version must look like X.Y.Z, got {self.version!r}")
        if self.videos not in VIDEO_MODES:
            raise HubBuildError(f"videos must be one of {VIDEO_MODES}")
        if self.videos == "embed" and self.video_root is None:
            raise HubBuildError(
                "--videos embed needs --video-root (the folder holding <source>/<video_path>)"
            )
        if self.max_shard_rows < 1:
            raise HubBuildError("max_shard_rows must be >= 1")


@dataclass
class HubFolder:
    path: Path
    configs: dict[str, dict[str, int]]
    files: list[str] = field(default_factory=list)


def _input_tables(spec: BuilderSpec, inputs: tuple[Path, ...]) -> tuple[list[Path], list[dict]]:
    tables, manifests = [], []
    for source in inputs:
        source = Path(source)
        if spec.input in ("coldstart", "rl"):
            found = sorted((source / "data").glob("*.parquet"))
            if not found:
                raise HubBuildError(f"{source}: no {spec.input} run here (expected {source}/data/*.parquet)")
            tables += found
            manifest = source / "manifest.json"
            if manifest.is_file():
                manifests.append(json.loads(manifest.read_text()) | {"_folder": str(source)})
        else:
            found = query_tables(source)
            tables += found
            for folder in sorted({t.parent for t in found}):
                if (folder / "manifest.json").is_file():
                    manifests.append(
                        json.loads((folder / "manifest.json").read_text()) | {"_folder": str(folder)}
                    )
    return tables, manifests


def load_rows_checked(spec: BuilderSpec, tables: list[Path]) -> pa.Table:
    parts = []
    for table in tables:
        schema = pq.read_schema(table)
        missing = [c for c in spec.columns if c not in schema.names]
        if missing:
            raise HubBuildError(f"{table}: lacks column(s) {missing} that builder {spec.name} publishes")
        parts.append(pq.read_table(table, columns=list(spec.columns)))
    if not parts:
        raise HubBuildError(f"builder {spec.name}: no input tables")
    merged = pa.concat_tables(parts, promote_options="permissive")
    return merged.sort_by("uid")


def _embed_videos(table: pa.Table, root: Path) -> pa.Table:
    values, missing = [], []
    for source, rel in zip(table["source"].to_pylist(), table["video_path"].to_pylist(), strict=True):
        path = video_file(root, source, rel)
        if not path.is_file():
            missing.append(str(path))
            values.append(None)
        else:
            values.append({"bytes": path.read_bytes(), "path": Path(rel).name})
    if missing:
        raise HubBuildError(f"{len(missing)} video(s) to embed are missing, e.g. {missing[0]}")
    video_type = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    return table.append_column("video", pa.array(values, type=video_type))


def _features(table: pa.Table):
    from datasets import Features, Video

    features = Features.from_arrow_schema(table.schema)
    if "video" in table.column_names:
        features["video"] = Video()
    return features


def _source_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if done.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
            return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "not a git checkout (installed package)"


def build_hub_folder(cfg: HubBuildConfig) -> HubFolder:
    spec = load_builder(cfg.builder)
    tables, manifests = _input_tables(spec, cfg.inputs)
    rows = load_rows_checked(spec, tables)
    if rows.num_rows == 0:
        raise HubBuildError(f"builder {spec.name}: the input tables have no rows")
    if cfg.videos == "embed":
        rows = _embed_videos(rows, Path(cfg.video_root))
    features = _features(rows)
    schema = features.arrow_schema
    rows = rows.cast(schema)

    sources = sorted(set(rows["source"].to_pylist()))
    split_of = (
        (lambda t: t["split"].to_pylist())
        if spec.split == "from_column"
        else (lambda t: [spec.split] * t.num_rows)
    )
    plan: dict[str, dict[str, pa.Table]] = {}
    for config in ["all", *sources]:
        part = rows if config == "all" else rows.filter(pa.compute.equal(rows["source"], config))
        splits = split_of(part)
        plan[config] = {}
        for split in sorted(set(splits)):
            mask = pa.array([s == split for s in splits])
            plan[config][split] = part.filter(mask)
        if not plan[config] or any(t.num_rows == 0 for t in plan[config].values()):
            raise HubBuildError(f"config {config}: an empty split")
    out = Path(cfg.out)
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for config, splits in plan.items():
        for split, table in splits.items():
            n = max(1, math.ceil(table.num_rows / cfg.max_shard_rows))
            for i in range(n):
                shard = table.slice(i * cfg.max_shard_rows, cfg.max_shard_rows)
                rel = f"data/{config}/{split}-{i:05d}-of-{n:05d}.parquet"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(shard, out / rel, compression="zstd")
                files.append(rel)
    configs = {c: {s: t.num_rows for s, t in splits.items()} for c, splits in plan.items()}
    histogram_image = None
    for manifest in manifests:
        if manifest.get("plot") and (Path(manifest["_folder"]) / manifest["plot"]).is_file():
            shutil.copyfile(Path(manifest["_folder"]) / manifest["plot"], out / manifest["plot"])
            histogram_image = manifest["plot"]
            files.append(manifest["plot"])
    sizes = {c: {s: t.nbytes for s, t in splits.items()} for c, splits in plan.items()}
    card = render_card(spec, cfg, configs, sizes, features, rows, manifests, histogram_image)
    (out / "README.md").write_text(card)
    info = {
        "schema_version": SCHEMA_VERSION,
        "toolkit_version": __version__,
        "source_commit": _source_commit(),
        "builder": spec.name,
        "repo": cfg.repo,
        "version": cfg.version,
        "configs": configs,
        "videos": cfg.videos,
    }
    (out / "vtg_data.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    files += ["README.md", "vtg_data.json"]
    folder = HubFolder(out, configs, sorted(files))
    if cfg.verify:
        verify_loads(folder)
    return folder


def verify_loads(folder: HubFolder) -> None:
    """Read every config back with ``datasets.load_dataset`` and compare the row counts."""
    from datasets import load_dataset

    with tempfile.TemporaryDirectory() as cache:
        for config, splits in folder.configs.items():
            loaded = load_dataset(str(folder.path), config, cache_dir=cache)
            got = {split: loaded[split].num_rows for split in loaded}
            if got != splits:
                raise HubBuildError(f"config {config}: load_dataset read {got}, expected {splits}")


def _yaml_header(
    spec: BuilderSpec, configs: dict[str, dict[str, int]], sizes, features, licences: set[str]
) -> str:
    import copy

    feature_list = features._to_yaml_list() if hasattr(features, "_to_yaml_list") else None
    header: dict[str, Any] = {
        "license": "other",
        "license_name": "mixed-per-source",
        "license_details": "; ".join(sorted(licences)),
        "pretty_name": spec.pretty_name,
        "task_categories": list(spec.task_categories),
        "tags": list(spec.tags),
        "configs": [
            {
                "config_name": config,
                **({"default": True} if config == "all" else {}),
                "data_files": [
                    {"split": split, "path": f"data/{config}/{split}-*.parquet"} for split in splits
                ],
            }
            for config, splits in configs.items()
        ],
        "dataset_info": [
            {
                "config_name": config,
                **({"features": copy.deepcopy(feature_list)} if feature_list else {}),
                "splits": [
                    {"name": split, "num_bytes": sizes[config][split], "num_examples": rows}
                    for split, rows in splits.items()
                ],
            }
            for config, splits in configs.items()
        ],
    }
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)


def render_card(
    spec, cfg: HubBuildConfig, configs, sizes, features, rows: pa.Table, manifests, histogram_image
) -> str:
    from jinja2 import Environment, StrictUndefined

    counts = {}
    for source in rows["source"].to_pylist():
        counts[source] = counts.get(source, 0) + 1
    sources = [
        {"name": s, "rows": n, "licence": REGISTRY[s].licence if s in REGISTRY else "see the source's terms"}
        for s, n in sorted(counts.items())
    ]
    provenance = [f"vtg-data {__version__}, source commit {_source_commit()}, table schema {SCHEMA_VERSION}"]
    models, funnel, histogram = [], None, None
    for manifest in manifests:
        stage = manifest.get("stage", "download")
        provenance.append(
            f"`{stage}` run in `{Path(manifest['_folder']).name}` ({_manifest_summary(manifest)})"
        )
        if manifest.get("teacher"):
            teacher = manifest["teacher"]
            saw = "saw" if manifest.get("teacher_saw_ground_truth") else "did not see"
            models.append(
                f"teacher: {teacher['backend']}:{teacher['model']} {teacher.get('revision') or ''} ({saw} the annotated moment)"
            )
        for role, prompt in (manifest.get("prompts") or {}).items():
            if prompt:
                models.append(f"{role} prompt `{prompt['name']}`, hash `{prompt['hash']}`")
        if manifest.get("rewriter"):
            models.append(f"rewriter: {manifest['rewriter']['backend']}:{manifest['rewriter']['model']}")
        if manifest.get("funnel"):
            funnel = manifest["funnel"]["overall"]
        if manifest.get("mean_iou_histogram", {}).get("after") is not None:
            hist = manifest["mean_iou_histogram"]
            bins = len(hist["before"])
            histogram = {
                "image": histogram_image,
                "bins": [
                    {"range": f"{i / bins:.2f}-{(i + 1) / bins:.2f}", "before": b, "after": a}
                    for i, (b, a) in enumerate(zip(hist["before"], hist["after"], strict=True))
                ],  # fmt: skip
            }
            policy = manifest.get("config", {})
            provenance.append(
                f"RL selection: policies {policy.get('policies')}, seed {policy.get('seed')}, size {policy.get('size')}"
            )
            scores = Path(policy.get("scores", "")) / "manifest.json"
            if scores.is_file():
                scored = json.loads(scores.read_text())
                models.append(f"policy scored with: {scored['policy']['backend']}:{scored['policy']['model']} "
                              f"{scored['policy'].get('revision', '')}, run `{scored['run_id']}`, "
                              f"k={scored['config']['k']}, temperature {scored['config']['temperature']}, "
                              f"prompt `{scored['prompt']['name']}` hash `{scored['prompt']['hash']}`, "
                              f"frames {scored['config']['policy']}")  # fmt: skip
    if not models:
        models.append("none: this dataset was made without a model (normalized annotations only)")
    videos_note = (
        "Videos are embedded: the `video` column decodes to frames (needs `torchcodec`)."
        if cfg.videos == "embed"
        else "Videos are not included: `video_path` is relative to the source's video folder "
        "(`<root>/videos/<source>/` after `vtg-data download SOURCE --root <root> --videos`)."
    )
    template = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(
        resources.files("vtg_data.cards").joinpath(spec.card).read_text()
    )
    return template.render(
        yaml_header=_yaml_header(spec, configs, sizes, features, {s["licence"] for s in sources}),
        spec=spec,
        repo=cfg.repo,
        version=cfg.version,
        toolkit_version=__version__,
        configs=[
            {"name": c, "splits": [{"name": s, "rows": n} for s, n in splits.items()]}
            for c, splits in configs.items()
        ],
        columns=[f"`{c}`" for c in rows.column_names],
        sources=sources,
        provenance=provenance,
        funnel=funnel,
        histogram=histogram if histogram_image else None,
        eval_card=spec.eval_card,
        models=models,
        changelog=[f"v{cfg.version}: {entry}" for entry in cfg.changelog or ("this release",)]
        + [entry for entry in cfg.previous_changelog if not entry.startswith(f"v{cfg.version}:")],
        videos_note=videos_note,
    )


def _manifest_summary(manifest: dict) -> str:
    counts = manifest.get("counts") or {}
    if manifest.get("stage") == "download" or "splits" in manifest:
        splits = manifest.get("splits", {})
        return (
            ", ".join(f"{s}: {v['counts']['queries']} queries" for s, v in splits.items())
            or "normalized corpus"
        )
    keys = [k for k in ("samples", "traces", "rows", "scored", "selected") if k in counts]
    return ", ".join(f"{k} {counts[k]}" for k in keys) or "run"


def changelog_of(card: str | None) -> list[str]:
    """The entries (``vX.Y.Z: ...``) of a card's changelog section, in order; none without a card."""
    if not card or "## Changelog" not in card:
        return []
    section = card.split("## Changelog", 1)[1].split("\n## ", 1)[0]
    return [line[2:].strip() for line in section.splitlines() if line.startswith("- v")]
