"""The prune step: unstructured magnitude, N:M semi-structured, and structured channel
pruning (uniform, per-layer, or searched against a MACs or measured-latency target),
each followed by optional fine-tuning (compressor.finetune).

    from compressor.prune import prune
    pruned, result = prune(model, step, train=train_data, evaluation=eval_data)

Importing this package is cheap (the config only); torch and torch_pruning load when
`prune` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compressor.config.prune import NMSpec, PruneStep, PruneTarget, StructuredSpec, UnstructuredSpec

if TYPE_CHECKING:
    from compressor.prune.run import PruneResult


def prune(model, step: PruneStep, **kwargs) -> tuple[object, "PruneResult"]:
    """See compressor.prune.run.prune."""
    from compressor.prune.run import prune as _prune

    return _prune(model, step, **kwargs)


__all__ = ["prune", "PruneStep", "UnstructuredSpec", "NMSpec", "StructuredSpec", "PruneTarget"]
