"""The difficulty stage on Ray Data: a map over shards with one model replica per worker.

Same shards, same per-shard function, same files as the in-process engine, so the two produce
the same table. On a cluster each worker takes ``gpus_per_worker`` GPUs; locally it runs on a
Ray instance started here.
"""

from __future__ import annotations

import json
from collections.abc import Callable


def score_with_ray(
    shards: dict[int, list[dict]], cfg, backend_factory: Callable, gpus_per_worker: float = 0.0
):
    import ray

    from vtg_data.stages.difficulty import score_shard

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    items = [{"shard": k, "rows": json.dumps(rows, default=str)} for k, rows in shards.items() if rows]
    if not items:
        return [], None

    class Scorer:
        def __init__(self) -> None:
            self.backend = backend_factory()  # loaded once per worker, never per shard

        def __call__(self, batch: dict) -> dict:
            results = [score_shard(int(shard), json.loads(rows), self.backend, cfg)
                       for shard, rows in zip(batch["shard"], batch["rows"], strict=True)]  # fmt: skip
            identity = json.dumps(self.backend.identity.__dict__)
            return {
                "shard": [r["shard"] for r in results],
                "rows": [r["rows"] for r in results],
                "skipped": [r["skipped"] for r in results],
                "failed": [r["failed"] for r in results],
                "identity": [identity] * len(results),
            }

    dataset = ray.data.from_items(items)
    outputs = dataset.map_batches(
        Scorer, batch_size=1, concurrency=cfg.workers, num_gpus=gpus_per_worker or None, batch_format="numpy"
    ).take_all()
    from vtg_data.lvlm import BackendIdentity

    identity = BackendIdentity(**json.loads(outputs[0]["identity"])) if outputs else None
    results = [{"shard": int(o["shard"]), "rows": int(o["rows"]), "skipped": bool(o["skipped"]),
                "failed": int(o["failed"])} for o in outputs]  # fmt: skip
    return results, identity
