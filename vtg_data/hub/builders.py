"""Builder recipes: one declarative YAML per published dataset, shipped inside the package.

A recipe names the run folders it reads (``input``), how rows become configs and splits, the
columns it publishes and the card template. Unknown keys are errors, so a typo in a recipe fails
a test, not a user's upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import yaml

INPUTS = ("coldstart", "rl", "normalized")


@dataclass(frozen=True)
class BuilderSpec:
    name: str
    pretty_name: str
    summary: str
    input: str
    split: str  # a split name, or "from_column"
    configs_by: str  # "source": one config per source plus "all"
    columns: tuple[str, ...]
    card: str
    task_categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    eval_card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"builder {self.name}: input must be one of {INPUTS}, got {self.input!r}")
        if self.configs_by != "source":
            raise ValueError(f"builder {self.name}: configs_by supports 'source' only")
        if "uid" not in self.columns or "source" not in self.columns:
            raise ValueError(f"builder {self.name}: columns must include uid and source")


def builder_names() -> list[str]:
    folder = resources.files("vtg_data.builders")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_builder(name: str) -> BuilderSpec:
    names = builder_names()
    if name not in names:
        raise ValueError(f"unknown builder {name!r}; builders: {', '.join(names)}")
    raw = yaml.safe_load(resources.files("vtg_data.builders").joinpath(f"{name}.yaml").read_text())
    known = {f.name for f in fields(BuilderSpec)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"builder {name}: unknown key(s) {sorted(unknown)}; known keys: {sorted(known)}")
    for key in ("columns", "task_categories", "tags"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return BuilderSpec(**raw)
