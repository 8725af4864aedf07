"""What each consumer needs beside an export to run it, written from the export's own options.

For an export ``DIR/NAME.jsonl`` (or ``.json``):

- EasyR1: ``NAME.format_prompt.jinja`` (the prompt's instruction; EasyR1 builds only a user turn),
  ``NAME.reward.py`` (the ``tvg_r1`` reward against the exported answer) and ``NAME.easyr1.yaml``
  (the ``data`` and ``worker.reward`` keys to merge into an EasyR1 config).
- TVG-R1: ``NAME.tvg-r1.yaml``, its data config (``json_path``, ``data_folder``).
- LLaMA-Factory: an entry named ``NAME`` in ``DIR/dataset_info.json`` (other entries kept).
- lmms-eval: ``NAME.lmms-eval/`` with the task YAML and a ``utils.py`` (``--include_path``).
- TRL: ``NAME.trl_reward.py`` (a reward function for ``GRPOTrainer``).

Every file names absolute paths, so it works from any working directory. The launch line of each
consumer is returned for the manifest and the command's output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vtg_data.files import write_text
from vtg_data.grounding.prompts import PromptTemplate

TRL_VIDEO_WARNING = (
    "TRL's GRPO and SFT trainers collect only image parts from a prompt: the video part of these rows "
    "is rendered as a placeholder without its frames, so a model trained there never sees the video. "
    "Use `vtg-data train sft|rl` to train on these rows with their videos."
)


@dataclass
class ConsumerFiles:
    files: list[Path] = field(default_factory=list)
    launch: str = ""
    warnings: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> Path:
    return write_text(path, text)


def _stem(out: Path) -> str:
    return out.name[: -len(out.suffix)] if out.suffix else out.name


def _header(what: str, out: Path) -> str:
    return f'"""{what} for {out.name}, written by `vtg-data export`; needs `pip install vtg-data`."""\n\n'


def easyr1_files(out: Path, template: PromptTemplate, preset: str) -> ConsumerFiles:
    stem, folder = _stem(out), out.parent.resolve()
    # the instruction verbatim (a raw block: its brackets and tags are not Jinja)
    jinja = _write(
        folder / f"{stem}.format_prompt.jinja",
        f"{{{{ content | trim }}}} {{% raw %}}{template.system}{{% endraw %}}\n",
    )
    reward = _write(folder / f"{stem}.reward.py", _header("EasyR1 reward", out) + (
        "from vtg_data.hub.consumer_hooks import EASYR1_REWARD_NAME as REWARD_NAME  # noqa: F401\n"
        "from vtg_data.hub.consumer_hooks import EASYR1_REWARD_TYPE as REWARD_TYPE  # noqa: F401\n"
        "from vtg_data.hub.consumer_hooks import easyr1_compute_score as compute_score  # noqa: F401\n"
    ))  # fmt: skip
    config = {
        "data": {"train_files": str(out.resolve()), "prompt_key": "prompt", "answer_key": "answer",
                 "video_key": "videos", "format_prompt": str(jinja)},
        "worker": {"reward": {"reward_function": f"{reward}:compute_score",
                              "reward_function_kwargs": {"preset": preset}}},
    }  # fmt: skip
    fragment = _write(folder / f"{stem}.easyr1.yaml", yaml.safe_dump(config, sort_keys=False))
    # EasyR1 reads one config= file; the fragment's keys go on the command line as overrides
    overrides = " ".join(f"{key}={value}" for key, value in _flatten(config))
    launch = f"python3 -m verl.trainer.main config=examples/config.yaml {overrides} data.val_files=..."
    return ConsumerFiles([jinja, reward, fragment], launch)


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def tvg_r1_files(
    out: Path, template: PromptTemplate, video_root: Path, score: str = "tvgonly"
) -> ConsumerFiles:
    stem, folder = _stem(out), out.parent.resolve()
    config = {"datasets": [{"json_path": str(out.resolve()), "data_folder": str(Path(video_root).resolve())}]}
    data_yaml = _write(folder / f"{stem}.tvg-r1.yaml", yaml.safe_dump(config, sort_keys=False))
    system = template.system.replace('"', '\\"')
    launch = (
        f"python3 -m verl.trainer.main config=examples/config.yaml data.train_files={data_yaml} "
        f'worker.reward.compute_score={score} data.system_prompt="{system}"'
    )
    return ConsumerFiles([data_yaml], launch)


LLAMAFACTORY_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}  # fmt: skip


def llamafactory_files(out: Path) -> ConsumerFiles:
    stem, folder = _stem(out), out.parent.resolve()
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info[stem] = {"file_name": out.name, "formatting": "sharegpt",
                  "columns": {"messages": "messages", "videos": "videos"}, "tags": LLAMAFACTORY_TAGS}  # fmt: skip
    _write(info_path, json.dumps(info, indent=2, sort_keys=True) + "\n")
    launch = (
        f"llamafactory-cli train --stage sft --dataset {stem} --dataset_dir {folder} --template qwen2_vl ..."
    )
    return ConsumerFiles([info_path], launch)


def lmms_eval_files(out: Path, template: PromptTemplate) -> ConsumerFiles:
    stem, folder = _stem(out), out.parent.resolve()
    task = "vtg_" + re.sub(r"[^A-Za-z0-9_]+", "_", stem)
    task_dir = folder / f"{stem}.lmms-eval"
    metrics = "".join(
        f"  - metric: {name}\n    aggregation: mean\n    higher_is_better: {'false' if name == 'parse_failure' else 'true'}\n"
        for name in ("r1_iou03", "r1_iou05", "r1_iou07", "miou", "parse_failure")
    )
    task_yaml = _write(task_dir / f"{task}.yaml", (
        f"# lmms-eval task over {out.name}, written by `vtg-data export`; needs `pip install vtg-data`.\n"
        f"task: {task}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(out.resolve()))}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\n"
        "doc_to_target: !function utils.doc_to_target\n"
        "process_results: !function utils.process_results\n"
        f"generation_kwargs:\n  max_new_tokens: {template.answer_budget}\n  temperature: 0\n  top_p: 1.0\n"
        "  num_beams: 1\n  do_sample: false\n"
        f"metric_list:\n{metrics}"
        f"metadata:\n  version: 1.0\n  prompt: {template.id}\n  parse_mode: {template.parse_mode}\n  hit_rule: '>='\n"
    ))  # fmt: skip
    utils = _write(task_dir / "utils.py", _header("lmms-eval task functions", out) + (
        "from vtg_data.hub.consumer_hooks import lmms_eval_hooks\n\n"
        f"_hooks = lmms_eval_hooks(parse_mode={template.parse_mode!r}, hit_rule='>=')\n"
        "doc_to_visual = _hooks['doc_to_visual']\n"
        "doc_to_text = _hooks['doc_to_text']\n"
        "doc_to_target = _hooks['doc_to_target']\n"
        "process_results = _hooks['process_results']\n"
    ))  # fmt: skip
    launch = (
        f"lmms-eval --model qwen2_5_vl --model_args pretrained=MODEL --include_path {task_dir} --tasks {task}"
    )
    return ConsumerFiles([task_yaml, utils], launch)


def trl_files(out: Path, preset: str) -> ConsumerFiles:
    stem, folder = _stem(out), out.parent.resolve()
    reward = _write(folder / f"{stem}.trl_reward.py", _header("TRL reward function", out) + (
        "from functools import partial\n\n"
        "from vtg_data.hub.consumer_hooks import trl_reward\n\n"
        f"tvg_reward = partial(trl_reward, preset={preset!r})\n"
        "tvg_reward.__name__ = 'tvg_reward'\n"
    ))  # fmt: skip
    launch = (
        f"GRPOTrainer(model=..., reward_funcs=[tvg_reward], train_dataset=load_dataset('json', "
        f"data_files='{out.resolve()}', split='train'))  # tvg_reward from {reward.name}"
    )
    return ConsumerFiles([reward], launch, [TRL_VIDEO_WARNING])
