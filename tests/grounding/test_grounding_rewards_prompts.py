import pytest

from vtg_data.grounding.prompts import PROMPTS, get_prompt
from vtg_data.grounding.rewards import (
    PRESETS,
    compute_reward,
    format_reward,
    iou_reward,
    timestamp_iou_reward,
)

SAMPLE = {"uid": "x", "windows": [[10.0, 20.0]], "duration": 60.0}


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        ("<think>look</think> <time>[12, 20]</time>", 1.0, 1.0),
        ("<think>a</think><time>[1, 2]</time> trailing words", 0.0, 1.0),
        ("<think>a</think><think>b</think><time>[1, 2]</time>", 0.0, 1.0),
        ("<time>[1, 2]</time>", 0.0, 0.0),
        ("no tags", 0.0, 0.0),
    ],
)
def test_format_reward_modes(text, strict, lenient):
    assert format_reward(text, "think_time", "strict") == strict
    assert format_reward(text, "think_time", "lenient") == lenient


def test_tvg_r1_preset_matches_the_released_rule():
    result = compute_reward("<think>look</think> <time>[12, 20]</time>", SAMPLE, "tvg_r1")
    assert result.total == pytest.approx(0.1 + 0.9 * 0.8)
    not_json = compute_reward("<think>a</think><time>12 - 20</time>", SAMPLE, "tvg_r1")
    assert not_json.components == {"format": 1.0, "iou": 0.0} and not_json.parse_status == "bad_json"


def test_timestamp_aware_iou_prefers_near_misses():
    near = timestamp_iou_reward("[21, 31]", SAMPLE)
    far = timestamp_iou_reward("[50, 60]", SAMPLE)
    exact = timestamp_iou_reward("[10, 20]", SAMPLE)
    assert exact == 1.0 and near == 0.0 == far  # no overlap: IoU is 0 whatever the distance
    partial_near = timestamp_iou_reward("[12, 22]", SAMPLE)
    partial_wide = timestamp_iou_reward("[2, 40]", SAMPLE)
    assert partial_near == pytest.approx((8 / 12) * (1 - 2 / 60) * (1 - 2 / 60))
    assert partial_near > partial_wide


def test_multi_window_ground_truth_uses_the_best_window():
    sample = {"windows": [[0.0, 4.0], [40.0, 50.0]], "duration": 60.0}
    assert iou_reward("[40, 50]", sample) == 1.0


def test_all_presets_run_and_report_parse_failures():
    for name in PRESETS:
        result = compute_reward("nothing useful", SAMPLE, name)
        assert result.total == 0.0 and result.parse_status != "ok"


def test_a_sample_without_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="no ground-truth"):
        iou_reward("[1, 2]", {"uid": "q1", "windows": [], "duration": 10})


def test_prompts_have_stable_distinct_hashes_and_video_parts():
    hashes = {p.hash for p in PROMPTS.values()}
    assert len(hashes) == len(PROMPTS)
    prompt = get_prompt("tvg_r1_think")
    assert prompt.hash == get_prompt("tvg_r1_think").hash and len(prompt.hash) == 16
    messages = prompt.messages("a man opens the door.", duration=31.0, frame_times=[0.25, 0.75])
    assert messages[0]["role"] == "system" and {"type": "video"} in messages[1]["content"]
    text = messages[1]["content"][1]["text"]
    assert "31.0 seconds long" in text and "0.2, 0.8" in text and text.endswith("a man opens the door.")
    with pytest.raises(ValueError, match="unknown prompt"):
        get_prompt("nope")
