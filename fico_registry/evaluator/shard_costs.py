"""What a sharded run adds to a Report: world size, per-stage modes, per-rank seconds and totals.

Collective: every rank calls these functions with the same report, and every rank ends with the
same settings and costs.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fico_registry.evaluator.sharded import Sharding


def annotate(sharding: Sharding, report: Any) -> None:
    """settings.world_size and costs.distributed (world size, modes, per-rank seconds), same on every rank."""
    report.settings["world_size"] = sharding.world_size
    seconds = {k: round(sharding.timings[k], 6) for k in sorted(sharding.timings)}
    mine = {"rank": sharding.rank, "host": socket.gethostname(), **seconds}
    # what this rank held of the embeddings: its shards, or (None) every row
    mine["resident"] = getattr(sharding, "resident", None)
    per_rank = sharding.all_gather_object(mine)
    costs = dict(report.costs or {})
    costs["distributed"] = {
        "world_size": sharding.world_size,
        "backend": sharding.backend,
        "sharding": dict(sharding.modes),
        "per_rank": per_rank,
    }
    report.costs = costs


def add_evaluate_costs(sharding: Sharding, report: Any, encoded: dict[str, Any], query_cost: Any = None) -> None:
    """evaluate(model, corpus): totals over ranks for encoding / query time, per-rank seconds beside."""
    mine = {
        "encode_images_s": round(encoded["image"].seconds, 6),
        "encode_texts_s": round(encoded["text"].seconds, 6),
        "encoded_images": int(encoded["image"].extra.get("encoded_items", encoded["image"].items)),
        "encoded_texts": int(encoded["text"].extra.get("encoded_items", encoded["text"].items)),
        "query_time_s": None if query_cost is None else round(query_cost.seconds, 6),
        "query_time_pairs": None if query_cost is None else query_cost.pairs,
        "query_time_calls": None if query_cost is None else query_cost.calls,
    }
    everyone = sharding.all_gather_object(mine)
    costs = report.costs
    ranks = [{"rank": r} for r in range(sharding.world_size)]
    fresh = {"world_size": sharding.world_size, "backend": sharding.backend, "per_rank": ranks}
    block = costs.setdefault("distributed", fresh)
    for entry, extra in zip(block["per_rank"], everyone, strict=True):
        entry.update({k: v for k, v in extra.items() if v is not None})
    for side, key in (("images", "encode_images_s"), ("texts", "encode_texts_s")):
        total = sum(e[key] for e in everyone)
        slowest = max(e[key] for e in everyone)
        info = costs["encode"][side]
        info["seconds"] = round(total, 6)  # device-seconds over all ranks; the wall time is the slowest rank's
        info["wall_seconds"] = round(slowest, 6)
        info["items_per_s"] = None if total <= 0 else round(info["items"] / total, 3)
        info["from_cache"] = all(e[f"encoded_{side}"] == 0 for e in everyone)
    if query_cost is not None and "query_time" in costs:
        costs["query_time"]["calls"] = sum(e["query_time_calls"] for e in everyone)
        costs["query_time"]["pairs"] = sum(e["query_time_pairs"] for e in everyone)
        costs["query_time"]["seconds"] = round(sum(e["query_time_s"] for e in everyone), 6)
        costs["query_time"]["wall_seconds"] = round(max(e["query_time_s"] for e in everyone), 6)
