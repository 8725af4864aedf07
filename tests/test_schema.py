import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vtg_data.schema import (
    QUERY_SCHEMA,
    RecordError,
    RecordRef,
    as_duration,
    as_time,
    normalize_query_text,
    normalize_window,
    read_table,
)

REF = RecordRef("anno.json", "line 7")


def test_window_inside_duration_is_untouched():
    assert normalize_window(1.0, 2.5, 10.0, REF) == ([1.0, 2.5], set())


def test_end_past_duration_is_clamped_and_flagged():
    assert normalize_window(8.0, 10.4, 10.0, REF) == ([8.0, 10.0], {"end_clamped"})


def test_inverted_window_is_swapped_and_flagged():
    assert normalize_window(8.0, 7.0, 10.0, REF) == ([7.0, 8.0], {"inverted_swapped"})


def test_start_past_duration_becomes_zero_length_at_the_end():
    window, flags = normalize_window(12.0, 13.0, 10.0, REF)
    assert window == [10.0, 10.0]
    assert flags == {"start_clamped", "end_clamped", "zero_length"}


def test_zero_length_is_flagged_not_repaired():
    assert normalize_window(4.97, 4.97, 10.0, REF) == ([4.97, 4.97], {"zero_length"})
    # zero length is a finding, so strict mode accepts it
    assert normalize_window(4.97, 4.97, 10.0, REF, strict=True)[1] == {"zero_length"}


@pytest.mark.parametrize(("start", "end"), [(8.0, 10.4), (8.0, 7.0)])
def test_strict_mode_turns_repairs_into_errors_naming_the_record(start, end):
    with pytest.raises(RecordError) as info:
        normalize_window(start, end, 10.0, REF, strict=True)
    assert "anno.json: record line 7" in str(info.value)
    assert "strict" in str(info.value)


def test_rounding_noise_below_zero_is_clamped_and_flagged():
    assert normalize_window(-0.1, 5.8, 10.0, REF) == ([0.0, 5.8], {"start_clamped"})
    window, flags = normalize_window(-0.2, -0.1, 10.0, REF)
    assert window == [0.0, 0.0] and flags == {"start_clamped", "end_clamped", "zero_length"}


def test_a_real_negative_start_is_an_error_naming_the_raw_value():
    with pytest.raises(RecordError, match=r"span \[-3, 4\]: start -3 s is negative") as info:
        normalize_window(-3.0, 4.0, 10.0, REF, raw=(-3, 4), what="span")
    assert info.value.record == "line 7"


def test_strict_mode_refuses_noise_below_zero_and_quotes_the_raw_values():
    with pytest.raises(RecordError, match=r"window \[-0.1, 5.8\] needs repair \(start_clamped\)"):
        normalize_window(-0.1, 5.8, 10.0, REF, strict=True)
    with pytest.raises(
        RecordError, match=r"window \[0, 130\] needs repair \(end_clamped\) against duration 129.96"
    ):
        normalize_window(0.0, 130.0, 129.96, REF, strict=True, raw=(0, 130))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (math.nan, "not finite"),
        (-1.0, "negative"),
        ("3.0", "not a number"),
        (None, "not a number"),
        (True, "not a number"),
    ],
)
def test_bad_times_are_rejected_with_the_reason(value, problem):
    with pytest.raises(RecordError, match=problem) as info:
        as_time(value, "window start", REF)
    assert info.value.file == "anno.json" and info.value.record == "line 7"


def test_duration_must_be_positive():
    with pytest.raises(RecordError, match="positive"):
        as_duration(0, REF)


def test_query_whitespace_is_collapsed_and_empty_query_rejected():
    assert normalize_query_text("  The girl  dances. ", REF) == "The girl dances."
    with pytest.raises(RecordError, match="empty"):
        normalize_query_text("   ", REF)


def test_newer_major_schema_version_is_refused(tmp_path):
    schema = QUERY_SCHEMA.with_metadata({b"vtg_data.schema_version": b"9.0"})
    pq.write_table(pa.Table.from_pylist([], schema=schema), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="upgrade"):
        read_table(tmp_path / "t.parquet")
