"""Real videos as the corpora ship them (tests/support/zoo.py): every container and codec, 29.97 fps,
a variable frame rate, a stream starting at 2 s, a phone's display matrix, audio first, a long GOP.
Each frame shows its own player time, so a decoder is right when the time it reports is the time
the frame shows, and upright when the frame can be read at all."""

import subprocess

import numpy as np
import pytest
from zoo import KINDS, make_zoo, shown_times

from vtg_data.video import SamplingPolicy, sample_frames, stream_info
from vtg_data.video.decode import BACKENDS, DecodeError, _upright, turns_upright

POLICY = SamplingPolicy(fps=4.0, max_frames=32, min_pixels=28 * 28, max_pixels=384 * 96)
# what a backend refuses, on this machine's builds: decord's bundled FFmpeg 4.1 has no AV1 decoder
REFUSES = {("av1_mkv", "decord")}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_every_frame_shows_the_time_its_decoder_reports_upright_from_zero(zoo, kind, backend):
    path = zoo[kind]
    try:
        clip = sample_frames(path, POLICY, backend=backend)
    except DecodeError as exc:
        assert (kind, backend) in REFUSES, exc
        return
    assert (kind, backend) not in REFUSES
    info = stream_info(path)
    shown = shown_times(clip.frames)  # garbage unless the frame is upright
    native_frame = 1 / info.fps if not info.variable_rate else 0.1  # the slowest part of the VFR video
    assert np.abs(shown - clip.timestamps).max() <= native_frame + 0.011, (shown, clip.timestamps)
    assert clip.timestamps[0] == pytest.approx(0.0, abs=1e-3)
    assert clip.plan.width > clip.plan.height  # the zoo's pictures are landscape when upright
    assert clip.frames.shape[1:3] == (clip.plan.height, clip.plan.width)
    # the model's time axis: frames spread over the whole video, told at the rate they were taken
    assert clip.fps * info.duration == pytest.approx(clip.num_frames)
    assert clip.timestamps[-1] < info.duration
    if backend == "auto":
        assert clip.backend in BACKENDS


def test_the_stream_facts_of_the_zoo(zoo):
    facts = {kind: stream_info(path) for kind, path in zoo.items()}
    assert facts["rotated_90"].rotation == 90 and facts["h264"].rotation == 0
    assert (facts["rotated_90"].width, facts["rotated_90"].height) == (384, 96)  # upright, not as stored
    assert facts["offset_start"].start == pytest.approx(2.0) and facts[
        "offset_start"
    ].duration == pytest.approx(4.0)
    assert [k for k, f in facts.items() if f.variable_rate] == ["vfr"]
    assert facts["vfr"].num_frames == 80 and facts["vfr"].duration == pytest.approx(4.0, abs=0.04)
    assert facts["ntsc_2997"].fps == pytest.approx(30000 / 1001, rel=1e-3)
    codecs = {kind: f.codec for kind, f in facts.items()}
    assert codecs["vp9_webm"] == "vp9" and codecs["av1_mkv"] == "av1" and codecs["mpeg4_avi"] == "mpeg4"
    assert codecs["hevc_10bit"] == "hevc" and "matroska" in facts["vp9_webm"].container


def test_a_variable_rate_video_is_planned_on_time_not_on_index(zoo):
    clip = sample_frames(
        zoo["vfr"], SamplingPolicy(fps=4.0, max_frames=16, min_pixels=28 * 28), backend="auto"
    )
    targets = np.arange(clip.num_frames) / clip.fps  # the start of each equal slice of the video
    # the frame on screen at each target: at most one frame (0.1 s in the 10-fps part) before it
    assert np.all(clip.timestamps <= targets + 1e-6) and np.all(targets - clip.timestamps < 0.1 + 1e-6)
    assert np.abs(shown_times(clip.frames) - targets).max() < 0.1 + 0.011


def test_turning_frames_upright_ourselves_matches_ffmpegs_own_turn(zoo, monkeypatch):
    """For a decoder that does not apply the display matrix: the stored frames, turned as a player
    turns them, read right (checked on frames decoded without any turn)."""
    path = zoo["rotated_90"]
    info = stream_info(path)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-frames:v", "3", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:"], capture_output=True, check=True).stdout  # fmt: skip
    stored = np.frombuffer(raw, np.uint8).reshape(3, 384, 96, 3)  # as the sensor saw it: sideways
    assert shown_times(stored).tolist() != [0.0, 0.04, 0.08]
    clip = sample_frames(path, POLICY, backend="ffmpeg")
    monkeypatch.setitem(__import__("vtg_data.video.decode", fromlist=["_TURNS"])._TURNS, "decord", False)
    turned = _upright(stored, clip.plan, "decord")
    assert info.rotation == 90 and shown_times(turned).tolist() == [0.0, 0.04, 0.08]


def test_which_decoders_turn_frames_themselves_is_measured():
    # both builds here apply the display matrix; the answer comes from decoding, not from a list
    assert turns_upright("decord") in (True, False) and turns_upright("torchcodec") in (True, False)


def test_a_video_no_backend_reads_names_every_backends_reason(tmp_path):
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25:duration=4",
                    "-c:v", "libx264", "-g", "25", "-movflags", "+faststart", str(whole)], check=True)  # fmt: skip
    broken = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # the index says 100 frames; the second half is gone
    with pytest.raises(
        DecodeError, match=r"cut.mp4: truncated: the stream's header says 4.00 s \(100 frames\)"
    ):
        sample_frames(broken, POLICY, backend="auto")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01" * 5000)
    with pytest.raises(DecodeError, match="not a readable media file"):
        sample_frames(garbage, POLICY, backend="auto")


def test_auto_falls_back_when_a_backend_fails_and_records_who_served(zoo, monkeypatch):
    import vtg_data.video.decode as decode

    def refuses(path, plan, timeout):
        raise DecodeError(path, "torchcodec failed: no decoder for this codec")

    monkeypatch.setitem(decode._DECODERS, "torchcodec", refuses)
    clip = sample_frames(zoo["av1_mkv"], POLICY, backend="auto", timeout=None)
    assert clip.backend == "ffmpeg"  # decord reads no AV1 either
    with pytest.raises(DecodeError) as caught:
        monkeypatch.setitem(decode._DECODERS, "ffmpeg", refuses)
        sample_frames(zoo["av1_mkv"], POLICY, backend="auto", timeout=None)
    message = str(caught.value)
    assert "no decoder reads it" in message and "decord:" in message and "torchcodec:" in message


def test_eval_with_the_tiny_model_reads_every_video_of_the_zoo(zoo, synthetic_root, tiny_model, tmp_path):
    """Every zoo video through ``vtg-data eval --model`` (the hf backend, ``--decoder auto``): all
    answered, each told its true length, the decoder of each clip counted in the eval card."""
    import json
    import shutil

    import polars as pl
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from vtg_data.cli import app

    videos = tmp_path / "videos" / "synthetic"
    videos.mkdir(parents=True)
    source = pq.read_table(synthetic_root / "normalized/synthetic/test.parquet")
    rows = pl.from_arrow(source).head(1).to_dicts() * len(zoo)
    for i, (kind, path) in enumerate(zoo.items()):
        shutil.copy(path, videos / path.name)
        length = stream_info(path).duration
        rows[i] = rows[i] | {"uid": f"synthetic/test/zoo-{kind}", "video_id": kind, "video_path": path.name,
                             "duration": length, "windows": [[0.5, 1.5]], "windows_raw": [[0.5, 1.5]]}  # fmt: skip
    table = tmp_path / "zoo.parquet"
    pq.write_table(pl.DataFrame(rows).to_arrow().cast(source.schema), table)
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model), "--data", str(table), "--video-root",
                                      str(tmp_path / "videos"), "--out", str(tmp_path / "run"), "--max-frames", "8",
                                      "--max-pixels", "12544", "--max-tokens", "4", "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "run/metrics.json").read_text())
    assert card["counts"]["failed"] == 0 and card["counts"]["scored"] == len(zoo)
    assert sum(card["card"]["backend_notes"]["clips_by_decoder"].values()) == len(zoo)
    for line in (tmp_path / "run/predictions.jsonl").read_text().splitlines():
        record = json.loads(line)
        shown = record["video"]
        assert shown["first"] == 0.0 and shown["width"] > shown["height"], record["uid"]
        assert shown["frames"] / shown["fps"] == pytest.approx(
            stream_info(zoo[record["uid"].split("zoo-")[1]]).duration
        )
