"""Requests grouped by video, each video decoded once, handed out in batches.

Shared by the backends that decode frames themselves (hf, vllm): the frames of one video serve
every request on it, and a video that cannot be decoded fails exactly its requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

from vtg_data.lvlm.base import Request, Response
from vtg_data.video import DecodeError, FrameCache, load_clips


def batches_by_video(
    requests: Sequence[Request],
    *,
    batch_size: int,
    patch: int,
    temporal_patch: int,
    decode_backend: str,
    frame_cache: FrameCache | None,
    decode_timeout: float | None,
    decoded_by: Counter | None = None,
) -> Iterator[list[tuple[Request, object]] | Response]:
    """Yield batches of (request, clip) and, for undecodable videos, one failed Response per request.

    The model's patch grid and temporal patch override the requests' sampling policy so frames
    are sized for this model. ``decoded_by`` counts the clips per backend that served them.
    """
    groups: dict[tuple, list[Request]] = {}
    for request in requests:
        policy = replace(request.policy, patch=patch, frame_multiple=temporal_patch)
        groups.setdefault((request.video, policy), []).append(request)
    pending: list[tuple[Request, object]] = []
    for (video, policy), members in groups.items():
        clip = None
        if video is not None:
            _, clip = next(
                iter(
                    load_clips(
                        [video], policy, backend=decode_backend, cache=frame_cache, timeout=decode_timeout
                    )
                )
            )
            if isinstance(clip, DecodeError):
                for request in members:
                    yield Response(request.uid, status="failed", error=str(clip))
                continue
            if decoded_by is not None:
                decoded_by[clip.backend] += 1
        for request in members:
            pending.append((request, clip))
            if len(pending) == batch_size:
                yield pending
                pending = []
    if pending:
        yield pending
