"""Reading a report.json that the user hands over (`compressor gate`, `compressor compare`,
a baseline): one reader that checks, once and up front, everything the gate, the
comparison and the CI outputs rely on. A broken, foreign, edited or newer file is one
line naming the file, the place in it and what to do (exit 2), never a KeyError later,
and never exit 1, which the gate keeps for "a budget is exceeded"."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.device_report import DEVICE_NAME
from benchmarks.report import SCHEMA, SCHEMA_VERSION
from compressor.errors import RecipeError, first_line

OLDEST_VERSION = 1  # version 1 has no devices: every row is this machine's, as version 2 reads it
MAX_BYTES = 512 * 2**20  # reports with every run's latency stay far below this
STATUSES = ("ok", "failed", "skipped")
OTHER_SCHEMAS = {"compressor.bench": "the output of `compressor bench --json`",
                 "compressor.gate": "the summary of `compressor gate --json`"}
UNFINISHED = "INCOMPLETE"  # what compressor.flows.rundir leaves in a run directory until its manifest is written
REMEDY = "give the report.json that `compressor run` wrote (or run it again)"


class ReportError(RecipeError):
    """A report file is missing, unreadable, or not a report this compressor reads."""


def load_report(path: Path, what: str = "report") -> dict:
    """The report at `path`, checked; `what` names its role in messages ('baseline')."""
    path = Path(path)
    label = f"{what} {path}"
    data = _parse(_read_text(path, label), label)
    check_report(data, label)
    return data


def _read_text(path: Path, label: str) -> str:
    if path.is_dir():
        raise ReportError(f"{label} is a directory; give the report.json file inside it")
    if not path.exists():
        raise ReportError(f"{label}: no such file")
    if not path.is_file():
        raise ReportError(f"{label} is not a regular file; give the report.json file itself")
    if (path.parent / UNFINISHED).is_file():
        raise ReportError(f"{label} belongs to a run that did not finish ({UNFINISHED} beside it); run it "
                          "again to completion")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ReportError(f"{label} is {size / 2**20:.0f} MB, far more than any report; {REMEDY}")
        raw = path.read_bytes()
    except OSError as e:
        raise ReportError(f"{label}: cannot read it ({e.strerror or first_line(e)})") from None
    if not raw.strip():
        raise ReportError(f"{label} is empty; {REMEDY}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReportError(f"{label} is not UTF-8 text (byte {e.start} is 0x{raw[e.start]:02x}): not a JSON "
                          f"report; {REMEDY}") from None


def _parse(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{label} is not JSON ({e.msg} at line {e.lineno}, column {e.colno}); {REMEDY}") from None
    except RecursionError:
        raise ReportError(f"{label} is nested too deeply to be a report; {REMEDY}") from None
    except ValueError as e:  # e.g. an integer longer than Python converts
        raise ReportError(f"{label} is not a readable JSON report ({first_line(e)}); {REMEDY}") from None


def check_report(data: Any, label: str) -> None:
    """Raise ReportError unless `data` has the shape a report of a version this
    compressor reads has where the readers look: header, benchmark settings, model
    identity, devices and artifact rows."""
    if not isinstance(data, dict):
        raise ReportError(f"{label} is JSON but not a report: its top level is {_kind(data)}, not an object; "
                          f"{REMEDY}")
    schema = data.get("schema")
    if schema != SCHEMA:
        what = OTHER_SCHEMAS.get(schema) if isinstance(schema, str) else None
        found = f"it is {what}" if what else ("it has no 'schema'" if schema is None else f"its schema is {schema!r}")
        raise ReportError(f"{label} is not a compressor run report ({found}, not {SCHEMA!r}); {REMEDY}")
    version = data.get("schema_version")
    if not _is_int(version):
        raise ReportError(f"{label}: schema_version is {_show(version)}, not an integer; {REMEDY}")
    if version > SCHEMA_VERSION:
        raise ReportError(f"{label} has report schema version {version}, newer than the version {SCHEMA_VERSION} this "
                          "compressor reads; upgrade compressor to read it")
    if version < OLDEST_VERSION:
        raise ReportError(f"{label} has report schema version {version}, older than the version {OLDEST_VERSION} "
                          "this compressor reads; run it again with this version")
    c = _Checker(label)
    c.field(data, "artifacts", list, "the list of artifact rows")
    c.field(data, "benchmark", dict, "the benchmark settings")
    sizes = c.field(data["benchmark"], "batch_sizes", list, "the batch sizes", where="benchmark")
    if not sizes:
        c.fail("benchmark.batch_sizes", "is empty")
    for i, b in enumerate(sizes):
        c.count(b, f"benchmark.batch_sizes[{i}]", low=1)
    c.field(data, "name", str, "the run's name")
    c.field(data, "model", dict, "the model's identity")
    if data.get("budgets") is not None and not isinstance(data["budgets"], dict):
        c.fail("budgets", f"is {_kind(data['budgets'])}, not an object")
    _check_devices(c, data.get("devices"))
    names: set[str] = set()
    for i, row in enumerate(data["artifacts"]):
        name = _check_row(c, row, f"artifacts[{i}]")
        if name in names:
            c.fail(f"artifacts[{i}].name", f"repeats {name!r}; every artifact is in a report once")
        names.add(name)


def _check_row(c: "_Checker", row: Any, at: str) -> str:
    if not isinstance(row, dict):
        c.fail(at, f"is {_kind(row)}, not an artifact object")
    for key in ("name", "target", "label", "precision"):
        if not c.field(row, key, str, f"the artifact's {key}", where=at):
            c.fail(f"{at}.{key}", "is empty")
    at = f"artifacts[{row['name']!r}]"
    status = row.get("status")
    if status not in STATUSES:
        c.fail(f"{at}.status", f"is {_show(status)}; it is one of {', '.join(STATUSES)}")
    for key in ("error",):
        if row.get(key) is not None and not isinstance(row[key], str):
            c.fail(f"{at}.{key}", f"is {_kind(row[key])}, not text")
    if row.get("device") is not None:
        c.device_name(row["device"], f"{at}.device")
    notes = row.get("notes")
    if notes is not None and not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        c.fail(f"{at}.notes", "is not a list of text lines")
    for key in ("accuracy_delta", "speedup_vs_fp32", "size_ratio_vs_fp32"):
        c.number(row.get(key), f"{at}.{key}", optional=True)
    fid = row.get("fidelity")
    if fid is not None:
        if not isinstance(fid, dict):
            c.fail(f"{at}.fidelity", f"is {_kind(fid)}, not an object")
        c.number(fid.get("cosine_mean"), f"{at}.fidelity.cosine_mean", optional=True)
    m = row.get("metrics")
    if m is None:
        if status == "ok":
            c.fail(f"{at}.metrics", "is missing, though the artifact's status is 'ok' (measured)")
        return row["name"]
    if not isinstance(m, dict):
        c.fail(f"{at}.metrics", f"is {_kind(m)}, not an object")
    at = f"{at}.metrics"
    c.number(m.get("size_bytes"), f"{at}.size_bytes", low=1)
    c.number(m.get("gzip_bytes"), f"{at}.gzip_bytes", low=1)
    c.number(m.get("accuracy"), f"{at}.accuracy", optional=True, low=0, high=1)
    c.number(m.get("reference_p50_ms"), f"{at}.reference_p50_ms", optional=True, low=0, above=True)
    if m.get("emulated") is not None and not isinstance(m["emulated"], bool):
        c.fail(f"{at}.emulated", f"is {_show(m['emulated'])}, not true/false")
    state = m.get("device_state")
    if state is not None:
        if not isinstance(state, dict):
            c.fail(f"{at}.device_state", f"is {_kind(state)}, not an object")
        for when in ("before", "after"):
            if state.get(when) is not None and not isinstance(state[when], dict):
                c.fail(f"{at}.device_state.{when}", f"is {_kind(state[when])}, not an object")
    lats = c.field(m, "latency", list, "the latency per batch size", where=at)
    for j, lat in enumerate(lats):
        where = f"{at}.latency[{j}]"
        if not isinstance(lat, dict):
            c.fail(where, f"is {_kind(lat)}, not an object")
        c.count(lat.get("batch"), f"{where}.batch", low=1)
        for key in ("p50_ms", "p90_ms", "p99_ms"):
            c.number(lat.get(key), f"{where}.{key}", low=0)
        c.count(lat.get("block", 0), f"{where}.block", low=0)
        for key, above in (("samples_ms", False), ("ref_blocks_ms", True)):
            values = lat.get(key) or []
            if not isinstance(values, list):
                c.fail(f"{where}.{key}", f"is {_kind(values)}, not a list of numbers")
            for k, x in enumerate(values):
                c.number(x, f"{where}.{key}[{k}]", low=0, above=above)
    return row["name"]


def _check_devices(c: "_Checker", devices: Any) -> None:
    """The devices section (version 2, optional): a description per device name."""
    if devices is None:
        return
    if not isinstance(devices, dict):
        c.fail("devices", f"is {_kind(devices)}, not an object of device descriptions")
    for name, info in devices.items():
        c.device_name(name, f"devices[{name!r}]")
        if not isinstance(info, dict):
            c.fail(f"devices[{name!r}]", f"is {_kind(info)}, not an object")
        if info.get("emulated") is not None and not isinstance(info["emulated"], bool):
            c.fail(f"devices[{name!r}].emulated", f"is {_show(info['emulated'])}, not true/false")
        notes = info.get("notes")
        if notes is not None and not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
            c.fail(f"devices[{name!r}].notes", "is not a list of text lines")
        if info.get("runtimes") is not None and not isinstance(info["runtimes"], dict):
            c.fail(f"devices[{name!r}].runtimes", f"is {_kind(info['runtimes'])}, not an object of versions")


class _Checker:
    """Raises one ReportError line: '<label>: <place> <problem>; <remedy>'."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, where: str, problem: str) -> None:
        raise ReportError(f"{self.label}: {where} {problem}; {REMEDY}")

    def field(self, obj: dict, key: str, kind: type, meaning: str, where: str = "") -> Any:
        place = f"{where}.{key}" if where else key
        if key not in obj:
            self.fail(place, f"is missing ({meaning})")
        if not isinstance(obj[key], kind):
            self.fail(place, f"is {_kind(obj[key])}, not {_kind(kind())}")
        return obj[key]

    def number(self, x: Any, where: str, optional: bool = False, low: float | None = None,
               high: float | None = None, above: bool = False) -> None:
        if x is None and optional:
            return
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            self.fail(where, f"is {_show(x)}, not a number")
        if not math.isfinite(x):
            self.fail(where, f"is {x}, not a finite number")
        if low is not None and (x <= low if above else x < low):
            self.fail(where, f"is {x}; it must be {'above' if above else 'at least'} {low}")
        if high is not None and x > high:
            self.fail(where, f"is {x}; it must be at most {high}")

    def device_name(self, x: Any, where: str) -> None:
        if not isinstance(x, str) or not DEVICE_NAME.fullmatch(x):
            self.fail(where, f"is {_show(x)}, not a device name (letters, digits, '-', '_', '.')")

    def count(self, x: Any, where: str, low: int) -> None:
        if not _is_int(x):
            self.fail(where, f"is {_show(x)}, not an integer")
        if x < low:
            self.fail(where, f"is {x}; it must be at least {low}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _kind(x: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(x), "a number" if isinstance(x, (int, float)) else type(x).__name__)


def _show(x: Any) -> str:
    if x is None:
        return "missing (null)"
    if isinstance(x, (dict, list)):
        return _kind(x)
    text = json.dumps(x) if not isinstance(x, float) or math.isfinite(x) else str(x)
    return text if len(text) <= 40 else text[:37] + "..."
