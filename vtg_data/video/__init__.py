"""Video access: probing, the sampling policy, decoding with true timestamps, a frame cache."""

from vtg_data.video.decode import BACKENDS, DecodedClip, DecodeError, StreamInfo, sample_frames, stream_info
from vtg_data.video.frames import FrameCache, load_clips
from vtg_data.video.sampling import SamplingPlan, SamplingPolicy, plan_sampling

__all__ = [
    "BACKENDS",
    "DecodeError",
    "DecodedClip",
    "FrameCache",
    "SamplingPlan",
    "SamplingPolicy",
    "StreamInfo",
    "load_clips",
    "plan_sampling",
    "sample_frames",
    "stream_info",
]
