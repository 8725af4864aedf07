"""Client-side cost of one ``--backend openai`` request: the frames route (decode with the sampling
plan, JPEG-encode, send) with a cold and a warm frame cache, against uploading the whole file
(read, base64, send), per video length; and the requests per second one client sustains.

The server answers at once (no model), so every second measured is the client's. Prints ratios
against the whole-file upload.

    python benchmarks/openai_client.py [--lengths 30 120 300] [--requests 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.openai_http import OpenAIBackend
from vtg_data.video import FrameCache, SamplingPolicy

ANSWER = json.dumps(
    {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "<time>[1.0, 2.0]</time>"}}],
        "usage": {"prompt_tokens": 10**6},
    }  # fmt: skip
).encode()


class Instant(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


def make_video(path: Path, seconds: int) -> Path:
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
                        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", str(path)], check=True)  # fmt: skip
    return path


def queries(video: Path, policy: SamplingPolicy, count: int) -> list[Request]:
    """``count`` different questions about one video."""
    return [
        Request(
            f"r{i}",
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": f"q{i}"}]}],
            str(video),
            policy,
        )  # fmt: skip
        for i in range(count)
    ]


def per_request(client: OpenAIBackend, video: Path, count: int, policy: SamplingPolicy) -> float:
    """Seconds per request, one request per call (no payload shared between requests)."""
    requests = queries(video, policy, count)
    began = time.perf_counter()
    for request in requests:
        (response,) = client.generate([request], GenerationParams(max_tokens=8))
        assert response.ok, response.error
    return (time.perf_counter() - began) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 120, 300])
    parser.add_argument("--requests", type=int, default=4)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Instant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    policy = SamplingPolicy()  # the defaults every stage uses: 2 fps, up to 128 frames, 602,112 pixels
    work = Path(tempfile.mkdtemp(prefix="oa-bench-"))
    print(
        f"{'video':>7} | {'whole file':>10} | {'frames, cold':>12} | {'frames, warm':>12} | cold/file | warm/file"
    )
    for seconds in args.lengths:
        video = make_video(work / f"v{seconds}.mp4", seconds)
        whole = OpenAIBackend("bench", base_url=url, video_mode="data_url", check_server=False)
        whole._encoded.clear()
        file_cost = per_request_fresh(whole, video, args.requests, policy)
        cold = cold_cost(url, video, args.requests, policy, work)
        cache = FrameCache(work / f"cache{seconds}")
        warm_client = OpenAIBackend("bench", base_url=url, frame_cache=cache, check_server=False)
        per_request(warm_client, video, 1, policy)  # fills the cache
        warm = per_request(warm_client, video, args.requests, policy)
        print(
            f"{seconds:>5} s | {file_cost:>8.3f} s | {cold:>10.3f} s | {warm:>10.3f} s | {cold / file_cost:>8.1f}x | {warm / file_cost:>8.2f}x"
        )
    rps = throughput(url, work, policy)
    print(f"one client, concurrency 8, warm cache, 120-s videos: {rps:.1f} requests/s")
    server.shutdown()


def per_request_fresh(client: OpenAIBackend, video: Path, count: int, policy) -> float:
    """The whole-file route without its small in-memory reuse: every request reads and encodes."""
    total = 0.0
    for _ in range(count):
        client._encoded.clear()
        total += per_request(client, video, 1, policy)
    return total / count


def cold_cost(url: str, video: Path, count: int, policy, work: Path) -> float:
    total = 0.0
    for i in range(count):
        client = OpenAIBackend("bench", base_url=url, frame_cache=FrameCache(work / f"cold{video.stem}{i}{time.time_ns()}"),
                               check_server=False)  # fmt: skip
        total += per_request(client, video, 1, policy)
    return total / count


def throughput(url: str, work: Path, policy) -> float:
    video = make_video(work / "v120.mp4", 120)
    cache = FrameCache(work / "cache-rps")
    client = OpenAIBackend("bench", base_url=url, frame_cache=cache, concurrency=8, check_server=False)
    per_request(client, video, 1, policy)
    requests = queries(video, policy, 24)
    began = time.perf_counter()
    # 24 queries on one video: one payload, 24 requests (corpora have 3-20 queries per video)
    assert all(r.ok for r in client.generate(requests, GenerationParams(max_tokens=8)))
    return len(requests) / (time.perf_counter() - began)


if __name__ == "__main__":
    main()
