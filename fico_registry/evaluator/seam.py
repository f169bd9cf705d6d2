"""Where an evaluation runs: in this one process, or over the ranks of a torch.distributed job.

evaluation_seam(device) gives a SingleProcess or an evaluator.sharded.Sharding; the evaluator calls
the same methods on either (encode a side, score cross-attention, refuse judged metrics, add the
costs) instead of branching on "sharded or not" in every function. Only the ranking itself is
dispatched in one place (evaluate_sources), since the two run different engines.
"""

from __future__ import annotations

from typing import Any

from fico_registry.evaluator.report import Report


class SingleProcess:
    """The Sharding interface for a run in one process: no collectives, nothing split."""

    def follows_shard(self, *_: Any) -> bool:
        """Embeddings are never held as shards in one process."""
        return False

    def refuse_judgments(self, judgments: Any) -> None:
        """Judged metrics are computed in one process: nothing to refuse."""

    def encode_side(self, model: Any, source: Any, side: str, **options: Any) -> Any:
        from fico_registry.models.encoding import encode_side

        return encode_side(model, source, side, **options)

    def cross_attention_shards(self, *_: Any, **__: Any) -> None:
        """None: one process scores the whole matrix (cross_attention_matrix)."""
        return None

    def cross_attention_matrix(self, model: Any, image_features: Any, text_features: Any, **scoring: Any) -> Any:
        from fico_registry.evaluator.query_time import cross_attention_matrix

        return cross_attention_matrix(model, image_features, text_features, **scoring)

    def annotate(self, report: Report) -> None:
        """Nothing to add: settings and costs of one process are the report's own."""

    def add_evaluate_costs(
        self, report: Report, costs: dict[str, Any], encoded: dict[str, Any], query_cost: Any
    ) -> None:
        report.costs = costs


def evaluation_seam(device: Any) -> Any:
    """This job's Sharding under torchrun (joining its group first), else a SingleProcess."""
    from fico_registry.evaluator.sharded import sharding

    return sharding(device) or SingleProcess()
