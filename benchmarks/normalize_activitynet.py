"""Time normalizing ActivityNet Captions val_2 (17,031 queries) against a naive loop.

The naive way is what most research loaders do: json.load, then for each query build a dict and
append it to a pandas-free list, then let pyarrow infer the schema. Ours validates every window,
records flags and provenance and writes an explicit schema. Prints queries/s and the ratio.

    python benchmarks/normalize_activitynet.py [path/to/val_2.json]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data.corpora import ParseContext, get_adapter
from vtg_data.corpora.base import sha256_file
from vtg_data.schema import rows_to_table, write_table_atomic

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "activitynet_captions" / "val_2.json"


def ours(path: Path, out: Path) -> int:
    ctx = ParseContext(file_hashes={path.name: sha256_file(path)})
    rows = get_adapter("activitynet_captions").parse("val_2", {"val_2.json": path}, ctx)
    write_table_atomic(rows_to_table(rows), out / "ours.parquet")
    return len(rows)


def naive(path: Path, out: Path) -> int:
    data = json.loads(path.read_text())
    records = []
    for vid, value in data.items():
        for window, sentence in zip(value["timestamps"], value["sentences"], strict=True):
            records.append(
                {"video": vid, "duration": value["duration"], "window": window, "query": sentence.strip()}
            )
    pq.write_table(pa.Table.from_pylist(records), out / "naive.parquet")
    return len(records)


def best_of(fn, *args, repeats: int = 5) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.is_file():
        sys.exit(f"annotation file not found: {path}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ours_s, n = best_of(ours, path, out)
        naive_s, n_naive = best_of(naive, path, out)
    assert n == n_naive
    print(f"queries: {n}")
    print(
        f"vtg-data normalize (validate, flag, provenance, explicit schema): {ours_s:.3f} s median, {n / ours_s:,.0f} queries/s"
    )
    print(
        f"naive load + inferred schema (no validation):                  {naive_s:.3f} s median, {n / naive_s:,.0f} queries/s"
    )
    print(f"ratio vtg-data / naive time: {ours_s / naive_s:.2f}x")


if __name__ == "__main__":
    main()
