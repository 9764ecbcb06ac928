"""The recipe head for the shipped digits CNN, shared by the tests that run it: the same
model block and digits data sections, spelled once. What each test is about (steps,
targets, benchmark, budgets) stays in the test."""

from __future__ import annotations

from compressor.zoo.digits import WEIGHTS_PATH

# The `model:` block's lines for the shipped digits CNN and its weights.
DIGITS_MODEL = ("  factory: compressor.zoo.digits:digits_cnn\n"
                f"  weights: {WEIGHTS_PATH}\n"
                "  inputs: [{name: pixels, shape: [1, 1, 8, 8]}]\n")

_SPLITS = {"calibration": "train", "evaluation": "test", "train": "train"}


def digits_head(name: str, *, outputs: bool = True, calibration: int | bool = False,
                evaluation: int | bool = False, train: int | bool = False) -> str:
    """`version: 1`, `name`, the digits model (with `outputs: [logits]` unless outputs=False)
    and a `data:` section over the digits splits: a number is a sample limit, True the
    whole split, False leaves the section out."""
    text = f"version: 1\nname: {name}\nmodel:\n{DIGITS_MODEL}"
    if outputs:
        text += "  outputs: [logits]\n"
    sections = {"calibration": calibration, "evaluation": evaluation, "train": train}
    data = ""
    for key, limit in sections.items():
        if limit is False:
            continue
        tail = "" if limit is True else f", limit: {int(limit)}"
        data += f"  {key}: {{source: digits, split: {_SPLITS[key]}{tail}}}\n"
    return text + (f"data:\n{data}" if data else "")
