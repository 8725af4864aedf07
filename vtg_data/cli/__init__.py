"""The ``vtg-data`` command line: argument parsing and printing only; the work is in the stages.

One module per command group registers its commands here: ``data`` (download, stats,
check-leakage, make-tiny-model), ``evaluate`` (eval), ``build`` (build coldstart, build rl,
score-difficulty), ``publish`` (push-to-hub, export), ``train`` (train sft, train rl), ``report``
(inspect, report), ``demo``.
The options of every command that runs a stage are generated from that stage's config dataclass
(``options``), so each field has one flag and one default.
"""

from __future__ import annotations

import os

import typer

from vtg_data.cli import build, data, demo, evaluate, publish, report, train
from vtg_data.cli.common import console

app = typer.Typer(
    help="Video temporal grounding data: download, build, score, publish, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
build_app = typer.Typer(
    help="Build training sets: cold-start SFT traces, difficulty-controlled RL sets.", no_args_is_help=True
)
train_app = typer.Typer(help="Train: supervised fine-tuning and GRPO, video-native.", no_args_is_help=True)


@app.callback()
def _quiet_library_bars() -> None:
    """When output is not a terminal (CI logs, a piped demo), the libraries' own tqdm bars ("Loading
    weights", "Generating train split") are turned off: each prints as carriage-return noise there,
    and our line progress already says where long work is. A variable the user set is kept."""
    if not console.is_terminal:
        for variable in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(variable, "1")


app.add_typer(build_app, name="build")
app.add_typer(train_app, name="train")

data.register(app)
evaluate.register(app)
build.register(app, build_app)
publish.register(app)
train.register(train_app)
report.register(app)
demo.register(app)

__all__ = ["app"]
