import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtg_data.grounding.parse import parse_answer, parse_windows, to_seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>at 3.0s he waves</think> <time>[12.5, 20.0]</time>", [(12.5, 20.0)]),
        ("<answer>4.2 - 9.8</answer>", [(4.2, 9.8)]),
        ("[3, 7]", [(3.0, 7.0)]),
        ("(3.5, 7.25)", [(3.5, 7.25)]),
        ("3.5 - 7", [(3.5, 7.0)]),
        ("3.5-7", [(3.5, 7.0)]),
        ("3.5 – 7", [(3.5, 7.0)]),
        ("3 to 7", [(3.0, 7.0)]),
        ("The event happens from 5.2 to 10.1 seconds.", [(5.2, 10.1)]),
        ("from 2.5s to 6.0s", [(2.5, 6.0)]),
        ("5.2s-8s", [(5.2, 8.0)]),
        ("between 3 and 7 seconds", [(3.0, 7.0)]),
        ("[1:05, 1:20.5]", [(65.0, 80.5)]),
        ("00:01:02.5 - 00:01:10", [(62.5, 70.0)]),
        ("[3.0 sec, 7.5 seconds]", [(3.0, 7.5)]),
        ("[10, 20], [30, 40]", [(10.0, 20.0), (30.0, 40.0)]),
        ("<time>[[1, 2], [3, 4]]</time>", [(1.0, 2.0), (3.0, 4.0)]),
        ("<answer>12 - 5</answer>", [(5.0, 12.0)]),  # reversed: swapped
        ("<time>[1, 2]</time> but maybe [3, 4]", [(1.0, 2.0)]),  # only the answer block counts
    ],
)
def test_tolerant_forms(text, expected):
    got = parse_windows(text)
    assert len(got) == len(expected)
    for window, want in zip(got, expected, strict=True):
        assert window == pytest.approx(want)


def test_reversed_and_clamped_are_reported():
    result = parse_answer("<answer>50 - 5</answer>", duration=30.0)
    assert result.ok and result.windows == [(5.0, 30.0)]
    assert result.repairs == {"swapped", "clamped"}


@pytest.mark.parametrize(
    "text",
    ["", "   ", None, 42, "no numbers here", "It starts at 3.", "<time></time>", "<answer>soon</answer>"],
)
def test_garbage_gives_no_windows_and_a_reason(text):
    result = parse_answer(text)
    assert result.windows == [] and not result.ok and result.reason


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("<think>x</think> <time>[5.2, 10.4]</time>", "ok"),
        ("<time> [5, 10] </time>", "ok"),
        ("[5.2, 10.4]", "no_answer"),
        ("<time>5.2 - 10.4</time>", "bad_json"),
        ("<time>[5.2]</time>", "not_a_pair"),
        ('<time>["a", "b"]</time>', "not_a_pair"),
        ("<time>[10.4, 5.2]</time>", "reversed"),
        ("<time>[1:05, 1:20]</time>", "bad_json"),
    ],
)
def test_strict_is_tvg_r1s_rule(text, status):
    result = parse_answer(text, mode="strict")
    assert result.status == status
    assert (result.windows != []) == (status == "ok")


def test_strict_takes_the_first_time_block_and_never_clamps():
    assert parse_windows("<time>[1, 500]</time><time>[2, 3]</time>", duration=60, mode="strict") == [
        (1.0, 500.0)
    ]


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError):
        parse_answer("[1, 2]", mode="loose")


@given(st.text(max_size=200))
def test_never_raises_on_any_text(text):
    result = parse_answer(text, duration=100.0)
    for start, end in result.windows:
        assert 0 <= start <= end <= 100.0


@given(st.floats(0, 3600, allow_nan=False), st.floats(0, 3600, allow_nan=False))
def test_formatted_pairs_round_trip(a, b):
    a, b = round(a, 2), round(b, 2)
    assert parse_windows(f"<time>[{a}, {b}]</time>") == [(min(a, b), max(a, b))]


def test_clock_times():
    assert to_seconds("1:23.5") == 83.5 and to_seconds("0:01:23.5") == 83.5 and to_seconds("83.5") == 83.5


def test_tolerant_takes_every_answer_block_strict_only_the_first():
    text = "<think>it starts at 0:01</think> <time>[1, 2]</time> and <time>[4, 6]</time>"
    assert parse_windows(text) == [(1.0, 2.0), (4.0, 6.0)]
    assert parse_windows(text, mode="strict") == [(1.0, 2.0)]
    assert parse_windows("<answer>3-5</answer><answer>from 7 to 9 s</answer>") == [(3.0, 5.0), (7.0, 9.0)]
