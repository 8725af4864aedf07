"""Peak memory of ``vtg-data export`` against the set's size: streaming by record batch against the
naive way (every row read into Python, sorted, every record built, then one ``json.dumps``).

Writes cold-start-like tables (a trace, its original, the SFT messages and the verdicts per row,
about 4 KB of text each) at two sizes, the larger the paper's 56K queries, and runs each export in
a fresh process so its peak resident memory is its own.

    python benchmarks/export_memory.py [--small 14000] [--large 56000] [--format trl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_ROWS = 7000  # rows per Parquet file and row group, as a sharded build writes them


def make_rows(start: int, count: int) -> pa.Table:
    """Rows with the columns a cold-start shard has that an export reads, at realistic text sizes."""
    rows = []
    for i in range(start, start + count):
        duration = 20.0 + i % 100
        window = [round(duration * 0.2, 2), round(duration * 0.6, 2)]
        thought = f"Frame by frame, sample {i}: " + "the person walks to the table and picks up a cup. " * 20
        trace = f"<think>{thought}</think> <time>[{window[0]}, {window[1]}]</time>"
        rows.append({
            "uid": f"bench/train/v{i // 4:06d}/{i % 4}", "source": "bench", "video_path": f"v{i // 4:06d}.mp4",
            "duration": duration, "query": f"the person picks up a cup ({i})", "windows": [window],
            "has_gt": True, "status": "ok", "target_window": window, "trace": trace, "trace_original": trace,
            "messages": [{"role": "system", "content": [{"type": "text", "text": "You FIRST think ..."}]},
                         {"role": "user", "content": [{"type": "text", "text": f"the person picks up a cup ({i})"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": trace}]}],
            "verdicts": json.dumps({"iou": {"ok": True, "value": 0.8}, "format": {"ok": True}}),
        })  # fmt: skip
    return pa.Table.from_pylist(rows)


def write_set(folder: Path, total: int) -> Path:
    data = folder / "data"
    data.mkdir(parents=True)
    for shard, start in enumerate(range(0, total, SHARD_ROWS)):
        pq.write_table(make_rows(start, min(SHARD_ROWS, total - start)), data / f"train-{shard:05d}.parquet")
    return folder


NAIVE = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
from vtg_data.hub.export import _record, get_prompt
source, fmt, out, videos = sys.argv[1:5]
rows = []
for table in sorted(Path(source, "data").glob("*.parquet")):
    rows += pq.read_table(table).to_pylist()
kept = [r for r in rows if r.get("has_gt", True) and r.get("status") in (None, "ok")]
template = get_prompt("tvg_r1_think")
records = [_record(r, fmt, Path(videos), template) for r in sorted(kept, key=lambda r: r["uid"])]
Path(out).write_text("".join(json.dumps(r) + "\\n" for r in records))
"""

STREAMING = """
import sys
from pathlib import Path
from vtg_data.hub.export import export
source, fmt, out, videos = sys.argv[1:5]
export(Path(source), fmt, Path(out), Path(videos))
"""


def peak_mib(code: str, source: Path, fmt: str, out: Path, videos: Path) -> tuple[float, float]:
    """Peak resident memory (MiB) and seconds of one export in a fresh process."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork and exec
    probe = code + "\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, str(source), fmt, str(out), str(videos)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    seconds = time.perf_counter() - start
    return int(done.stdout.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=14000)
    parser.add_argument("--large", type=int, default=56000)
    parser.add_argument("--format", default="trl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results: dict[tuple[str, int], tuple[float, float]] = {}
        for size in (args.small, args.large):
            source = write_set(tmp / f"set-{size}", size)
            for name, code in (("streaming", STREAMING), ("naive", NAIVE)):
                out = tmp / f"{name}-{size}.jsonl"
                results[name, size] = peak_mib(code, source, args.format, out, tmp / "videos")
                mib, seconds = results[name, size]
                print(f"{name:9s} {size:6d} rows: peak {mib:7.0f} MiB, {seconds:5.1f} s", flush=True)
            same = (tmp / f"streaming-{size}.jsonl").read_bytes() == (
                tmp / f"naive-{size}.jsonl"
            ).read_bytes()
            print(f"  the two exports are {'identical' if same else 'DIFFERENT'}")
        for name in ("streaming", "naive"):
            growth = results[name, args.large][0] / results[name, args.small][0]
            print(f"{name}: peak memory at {args.large} rows / at {args.small} rows = {growth:.2f}x")
        ratio = results["naive", args.large][0] / results["streaming", args.large][0]
        speed = results["naive", args.large][1] / results["streaming", args.large][1]
        print(f"at {args.large} rows the naive way takes {ratio:.2f}x the streaming memory "
              f"and {speed:.2f}x its time")  # fmt: skip


if __name__ == "__main__":
    main()
