"""The fields of a `weight_only` quantization variant, their defaults, and what the other
modes may not say (and weight_only may not say of theirs).

Weight-only quantization stores the weights of linear layers (and embedding tables) in
4 or 8 bits, block by block along the input axis, and leaves activations in float: it
shrinks a model without calibration (gptq calibrates), and needs no activation ranges.
"""

from __future__ import annotations

from typing import Any

# The fields only weight_only has, with the defaults a variant of that mode gets.
# Embedding tables default to int8 blocks: a lookup does no arithmetic, so their bits buy size
# alone; on all-MiniLM-L6-v2 (gptq int4 linear layers) int8 tables cost no cosine, int4 ones
# 0.003 of the mean and 0.002 of the worst sentence's (benchmarks/suite/weight_only.py).
WEIGHT_ONLY_DEFAULTS: dict[str, Any] = {"bits": 4, "group_size": 32, "algorithm": "rtn", "compute": "float",
                                        "embeddings": "int8"}
# symmetric depends on the bits: int8 weights are symmetric by habit (every runtime's int8
# kernels take them); 4-bit ones keep a zero point per group, which holds more of the range.
GROUP_SIZES = (32, 64, 128, 256)
# What static/dynamic quantization of activations is configured with: meaningless here.
ACTIVATION_FIELDS = ("calibration", "percentile", "per_channel", "symmetric_activations", "outliers",
                     "smoothing_alpha")


def fill_weight_only(data: Any) -> Any:
    """Before validation: a weight_only variant gets its defaults written in (so that the
    report's intent shows what was done); any other mode is refused the weight-only fields,
    and weight_only the activation fields, each with one line."""
    if not isinstance(data, dict):
        return data
    mode = data.get("mode")
    own = [k for k in (*WEIGHT_ONLY_DEFAULTS, "symmetric") if k in data and data[k] is not None]
    if mode != "weight_only":
        if own and mode is not None:
            raise ValueError(f"{', '.join(own)} belong{'s' if len(own) == 1 else ''} to mode: weight_only, not "
                             f"{mode} (drop {'it' if len(own) == 1 else 'them'}, or use mode: weight_only)")
        return data
    given = [k for k in ACTIVATION_FIELDS if k in data]
    if given:
        raise ValueError(f"weight_only keeps activations in float, so {', '.join(given)} "
                         f"{'does' if len(given) == 1 else 'do'} not apply; drop {'it' if len(given) == 1 else 'them'} "
                         "(weight_only takes bits, group_size, symmetric, algorithm, compute, embeddings)")
    out = {**{k: v for k, v in WEIGHT_ONLY_DEFAULTS.items()}, **{k: v for k, v in data.items() if v is not None}}
    out.setdefault("symmetric", out["bits"] == 8)
    if "calibration_samples" in data and out["algorithm"] != "gptq":
        raise ValueError(f"calibration_samples applies to algorithm: gptq (the one that calibrates), not "
                         f"{out['algorithm']}; drop it or use algorithm: gptq")
    if data.get("fallback") is not None:
        raise ValueError("fallback is not offered for weight_only: keep sensitive layers float with 'exclude', "
                         "or use bits: 8, a smaller group_size or algorithm: gptq")
    return out


def check_weight_only(bits: int, group_size: int | str, symmetric: bool, algorithm: str, compute: str) -> None:
    """The combinations no target lowers, refused when the recipe is read."""
    if algorithm == "hqq" and (bits != 4 or symmetric):
        raise ValueError("algorithm: hqq fits 4-bit weights with a float zero point per group: use bits: 4 and "
                         "symmetric: false, or algorithm: rtn")
    if algorithm == "gptq" and bits != 4:
        raise ValueError("algorithm: gptq here writes 4-bit weights; for bits: 8 use algorithm: rtn (8 bits "
                         "round to nearest within 0.1% of float)")
    if algorithm in ("hqq", "gptq") and group_size == "channel":
        raise ValueError(f"algorithm: {algorithm} quantizes blocks: give group_size 32, 64, 128 or 256")


def weight_only_label(bits: int) -> str:
    return f"int{bits}-weight-only"
