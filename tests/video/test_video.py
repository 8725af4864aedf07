"""Frame sampling and decoding on videos whose content encodes time."""

import time
from fractions import Fraction

import numpy as np
import pytest
from videos import frame_numbers, timecode_video

from vtg_data.video import (
    DecodeError,
    FrameCache,
    SamplingPolicy,
    load_clips,
    plan_sampling,
    sample_frames,
    stream_info,
)
from vtg_data.video.decode import _isolated

POLICY = SamplingPolicy(fps=2.0, min_pixels=4 * 28 * 28, max_pixels=320 * 64)
BACKENDS = ["decord", "torchcodec", "ffmpeg"]


@pytest.fixture(
    scope="module", params=[("25", 4.0), ("30000/1001", 3.7), ("24", 9.93), ("10", 2.05), ("60", 1.3)]
)
def video(request, tmp_path_factory):
    fps, duration = request.param
    path = tmp_path_factory.mktemp("tc") / f"tc_{fps.replace('/', '_')}_{duration}.mp4"
    return timecode_video(path, fps=fps, duration=duration), float(Fraction(fps)), duration


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoded_frames_are_the_planned_ones_with_true_timestamps(video, backend):
    path, native_fps, duration = video
    clip = sample_frames(path, POLICY, backend=backend)
    assert frame_numbers(clip.frames) == list(clip.plan.indices)
    # the reported time of every frame is its own presentation time, within one frame
    assert np.allclose(clip.timestamps, np.array(clip.plan.indices) / native_fps, atol=1 / native_fps + 1e-6)
    # and within one frame of where the model will place it: index / sampling fps
    n = clip.num_frames
    assert clip.timestamps[0] == 0.0
    assert np.all(np.abs(clip.timestamps - np.arange(n) / clip.fps) <= 1 / native_fps + 1e-6)
    # the model-facing fps is the rate the frames were taken at
    info = stream_info(path)
    assert clip.fps == pytest.approx(n * info.fps / info.num_frames)
    assert clip.fps == pytest.approx(n / info.duration, rel=0.02)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (clip.plan.height, clip.plan.width, 3)
    assert clip.plan.height % 28 == 0 and clip.plan.width % 28 == 0


def test_backends_return_the_same_frames(video):
    path, _, _ = video
    clips = [sample_frames(path, POLICY, backend=b) for b in BACKENDS]
    for other in clips[1:]:
        assert np.allclose(other.timestamps, clips[0].timestamps, atol=1e-4)  # decord reports float32
        assert np.abs(other.frames.astype(int) - clips[0].frames.astype(int)).mean() < 8


def test_policy_limits_frame_count_and_pixels():
    policy = SamplingPolicy(
        fps=2.0, min_frames=4, max_frames=16, max_pixels=224 * 224, total_pixels=16 * 112 * 112
    )
    long = plan_sampling(policy, duration=600.0, native_fps=30.0, num_frames=18000, width=1920, height=1080)
    assert len(long.indices) == 16 and long.fps == pytest.approx(16 / 600)
    assert long.width * long.height <= 112 * 112 and long.width % 28 == 0
    assert long.width / long.height == pytest.approx(16 / 9, rel=0.2)
    short = plan_sampling(policy, duration=1.0, native_fps=30.0, num_frames=30, width=640, height=360)
    assert len(short.indices) == 4  # min_frames
    tiny = plan_sampling(policy, duration=0.1, native_fps=30.0, num_frames=3, width=64, height=64)
    assert len(set(tiny.indices)) == len(tiny.indices) <= 3


def test_frame_count_is_a_multiple_of_the_temporal_patch():
    for duration in (3.1, 5.7, 11.0, 13.3):
        plan = plan_sampling(
            POLICY, duration=duration, native_fps=25.0, num_frames=int(duration * 25), width=320, height=64
        )
        assert len(plan.indices) % 2 == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_files_fail_fast_with_the_file_named(tmp_path, backend):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    whole = timecode_video(tmp_path / "whole.mp4", duration=4.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    faststart = timecode_video(tmp_path / "fs.mp4", duration=4.0, extra=("-movflags", "+faststart"))
    cut_fs = tmp_path / "cut_fs.mp4"
    cut_fs.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 3])
    for path, words in [(empty, "empty"), (text, "not a readable media file"), (cut, ""), (cut_fs, ""),
                        (tmp_path / "absent.mp4", "not found")]:  # fmt: skip
        start = time.monotonic()
        with pytest.raises(DecodeError) as info:
            sample_frames(path, POLICY, backend=backend, timeout=30)
        assert str(path) in str(info.value) and words in str(info.value)
        assert time.monotonic() - start < 20


def _hang(path, plan, timeout):
    time.sleep(60)


def test_a_hanging_decoder_is_killed_at_the_timeout(tmp_path):
    plan = plan_sampling(POLICY, duration=1.0, native_fps=10.0, num_frames=10, width=64, height=64)
    start = time.monotonic()
    with pytest.raises(DecodeError, match="timed out after 1 s"):
        _isolated(_hang, str(tmp_path / "x.mp4"), plan, 1.0)
    assert time.monotonic() - start < 5


def test_each_video_is_decoded_once_and_cached(tmp_path, monkeypatch):
    import vtg_data.video.frames as frames_module

    a = timecode_video(tmp_path / "a.mp4", duration=2.0)
    b = timecode_video(tmp_path / "b.mp4", duration=3.0)
    calls = []
    real = frames_module.sample_frames

    def counting(path, policy, **kwargs):
        calls.append(path.name)
        return real(path, policy, **kwargs)

    monkeypatch.setattr(frames_module, "sample_frames", counting)
    cache = FrameCache(tmp_path / "cache")
    first = dict(load_clips([a, b, a, a, b], POLICY, cache=cache))
    assert calls == ["a.mp4", "b.mp4"] and len(first) == 2
    second = dict(load_clips([b, a], POLICY, cache=cache))
    assert calls == ["a.mp4", "b.mp4"]  # served from the cache
    assert np.array_equal(second[a].frames, first[a].frames)
    assert second[a].plan == first[a].plan and second[a].fps == first[a].fps
    other_policy = SamplingPolicy(fps=1.0, min_pixels=4 * 28 * 28, max_pixels=320 * 64)
    list(load_clips([a], other_policy, cache=cache))
    assert calls[-1] == "a.mp4"  # a new policy is a new key


def test_a_bad_video_is_yielded_as_an_error_not_raised(tmp_path):
    good = timecode_video(tmp_path / "good.mp4", duration=2.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 10)
    results = dict(load_clips([bad, good], POLICY))
    assert isinstance(results[bad], DecodeError) and results[good].num_frames > 0
