"""Budgets: what a CI gate holds an artifact to. Plain data, validated strictly.

Written under `budgets:` in a recipe or in a separate budgets.yaml (`version: 1` on top).
`limits` maps an artifact selector to its limits. A selector is `[DEVICE:]TARGET/WHAT`,
where WHAT matches an artifact's label (`int8-static`) or precision (`int8`); `*` and
other shell wildcards work in every part, and `*` alone selects every artifact. DEVICE
names the device that measured the row (`pi5:tflite/int8`, `pi5:*`, `*:onnx/int8`);
a selector without it selects the rows of this machine ("local") only, so budgets
written before devices existed keep their meaning.

Units: sizes in bytes or with a unit ("300KB", "1.5MiB"); latency in milliseconds;
accuracy in percent and accuracy drops in percentage points; regressions against a
baseline report in percent (latency, size) or points (accuracy).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from compressor.config.device_names import LOCAL, NAME as DEVICE_NAME
from compressor.config.strict import MAX_BATCH, Bool, Bytes, Float, Int, Strict, UserPath, Version

MAX_BYTES = 2**50  # a PiB: past every artifact and disk
MAX_MS = 3_600_000.0  # an hour per inference
MAX_PERCENT = 100_000.0  # a regression of 1000x
WILDCARDS = "*?["
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9._\-*?\[\]!]+")  # a shell wildcard over device names
SELECTOR_FORM = ("use [DEVICE:]TARGET/LABEL-OR-PRECISION (e.g. 'onnx/int8', 'onnx/*', '*/int8', "
                 "'pi5:tflite/int8-static', '*:onnx/int8') or [DEVICE:]* ('*', 'pi5:*')")


class Limits(Strict):
    # absolute
    max_size: Bytes | None = Field(None, le=MAX_BYTES, description="bytes on disk, all files of the artifact")
    max_gzip_size: Bytes | None = Field(None, le=MAX_BYTES, description="bytes after gzip")
    max_p50_ms: Float | None = Field(None, gt=0, le=MAX_MS, description="milliseconds")
    max_p90_ms: Float | None = Field(None, gt=0, le=MAX_MS, description="milliseconds")
    max_p99_ms: Float | None = Field(None, gt=0, le=MAX_MS, description="milliseconds")
    min_accuracy: Float | None = Field(None, ge=0, le=100, description="percent")
    max_accuracy_drop: Float | None = Field(None, ge=0, le=100, description="points below the PyTorch fp32 model")
    min_cosine: Float | None = Field(None, ge=-1, le=1, description="mean output cosine against the reference")
    # relative to the fp32 artifact of the same target, same run
    min_speedup: Float | None = Field(None, gt=0, le=1000, description="times faster than the fp32 artifact")
    max_size_ratio: Float | None = Field(None, gt=0, le=1000, description="size over the fp32 artifact's")
    # against a baseline report
    max_latency_regression: Float | None = Field(None, ge=0, le=MAX_PERCENT,
                                                 description="percent slower than the baseline")
    max_size_regression: Float | None = Field(None, ge=0, le=MAX_PERCENT,
                                              description="percent larger than the baseline")
    max_accuracy_regression: Float | None = Field(None, ge=0, le=100, description="points below the baseline")

    @model_validator(mode="after")
    def _some_limit(self) -> "Limits":
        if not self.given():
            raise ValueError(f"no limit given: name at least one of {', '.join(type(self).model_fields)}")
        return self

    def given(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class LatencyPolicy(Strict):
    batch: Int | None = Field(None, ge=1, le=MAX_BATCH,
                              description="batch size the latency budgets apply to (default: the first)")
    confidence: Float = Field(0.95, gt=0.5, lt=1, description="of the bootstrap interval for baseline comparisons")
    normalize: Bool = Field(True, description="divide by the reference workload timed in the same run, so a "
                                             "slower or faster runner does not move the comparison")
    resamples: Int = Field(2000, ge=200, le=1_000_000, description="bootstrap resamples of the interval")
    quantile: Float = Field(50, gt=0, lt=100, description="percentile of the timed runs compared against the "
                            "baseline's: 50 is the median; lower values also ignore stretches of a busy machine")


class Recommended(Strict):
    """What the artifact a run recommends for each device (the fastest that passed
    validation and every other budget) must reach."""

    min_speedup: Float | None = Field(None, gt=0, le=1000, description="times faster than the fastest fp32 artifact "
                                      "of any target on the same device")
    max_p50_ms: Float | None = Field(None, gt=0, le=MAX_MS, description="milliseconds")
    devices: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=1000,
                               description="devices (names or wildcards) that must have a recommendation; "
                               "default every device the run measured")

    @model_validator(mode="after")
    def _some_limit(self) -> "Recommended":
        if self.min_speedup is None and self.max_p50_ms is None:
            raise ValueError("recommended: name min_speedup or max_p50_ms (or both)")
        for d in self.devices:
            if not DEVICE_PATTERN.fullmatch(d):
                raise ValueError(f"recommended.devices: {d!r} is not a device name or a wildcard")
        return self

    def given(self) -> dict[str, float]:
        return {k: float(v) for k in ("min_speedup", "max_p50_ms") if (v := getattr(self, k)) is not None}


class BudgetsSpec(Strict):
    baseline: UserPath | None = Field(None, description="baseline report.json for regression limits")
    latency: LatencyPolicy = LatencyPolicy()
    limits: dict[str, Limits] = Field(default_factory=dict, max_length=1000)
    recommended: Recommended | None = Field(None, description="limits on the artifact the run recommends per device "
                                            "(the fastest that passed validation and the limits)")

    @model_validator(mode="after")
    def _something(self) -> "BudgetsSpec":
        if not self.limits and self.recommended is None:
            raise ValueError("budgets: give 'limits' (selector -> limits) or 'recommended' (or both)")
        return self

    @field_validator("limits")
    @classmethod
    def _selectors(cls, v: dict[str, Limits]) -> dict[str, Limits]:
        for sel in v:
            check_selector(sel)
        return v

    def needs_baseline(self) -> bool:
        return any(k.startswith("max_") and k.endswith("_regression") for lim in self.limits.values()
                   for k in lim.given())


class BudgetsFile(BudgetsSpec):
    version: Version


def check_selector(sel: str) -> None:
    """Raise ValueError (one line, naming the form) unless `sel` is a selector."""
    if sel.count(":") > 1:
        raise ValueError(f"selector {sel!r} has more than one ':'; {SELECTOR_FORM}")
    device, sep, rest = sel.partition(":") if ":" in sel else ("", "", sel)
    for part, where in ((device, "before"), (rest, "after")):
        if sep and not part:
            raise ValueError(f"selector {sel!r} has nothing {where} ':'; {SELECTOR_FORM}")
    exact = not any(c in device for c in WILDCARDS)
    if sep and not (re.fullmatch(DEVICE_NAME, device) if exact else DEVICE_PATTERN.fullmatch(device)):
        raise ValueError(f"selector {sel!r}: {device!r} is not a device name (letters, digits, '-', '_', '.') "
                         f"or a wildcard; {SELECTOR_FORM}")
    if rest != "*" and rest.count("/") != 1:
        raise ValueError(f"selector {sel!r}: {SELECTOR_FORM}")


def split_selector(selector: str) -> tuple[str, str]:
    """(device pattern, artifact pattern): no device part means this machine."""
    device, sep, rest = selector.partition(":")
    return (device, rest) if sep else (LOCAL, selector)


def selects(selector: str, target: str, label: str, precision: str, device: str = LOCAL) -> bool:
    dev, what_all = split_selector(selector)
    if not fnmatch.fnmatchcase(device, dev):
        return False
    if what_all == "*":
        return True
    t, what = what_all.split("/", 1)
    return fnmatch.fnmatchcase(target, t) and (fnmatch.fnmatchcase(label, what) or
                                               fnmatch.fnmatchcase(precision, what))


def is_exact(selector: str) -> bool:
    """A selector without wildcards names one artifact, which must then be in the report."""
    return not any(c in selector for c in WILDCARDS)


def named_device(selector: str) -> str | None:
    """The device a selector's prefix names without wildcards, which must then be in the
    report (an unprefixed selector names none: it means this machine's rows, if any)."""
    if ":" not in selector:
        return None
    device = split_selector(selector)[0]
    return None if any(c in device for c in WILDCARDS) else device


def load_budgets(path: Path) -> BudgetsFile:
    from compressor.config.reading import read_file, read_yaml, validate_yaml

    path = Path(path)
    data, root = read_yaml(read_file(path, "budgets"), str(path),
                           "a budgets file is a YAML mapping with 'version: 1' and 'limits'")
    spec = validate_yaml(BudgetsFile, data, root, str(path))
    if spec.baseline is not None and not spec.baseline.is_absolute():
        spec = spec.model_copy(update={"baseline": path.parent / spec.baseline})
    return spec
