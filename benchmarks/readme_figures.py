"""The README's figure tables, made from the JSON records the suites wrote.

    python -m benchmarks.readme_figures                          # rewrite the tables in README.md
    python -m benchmarks.readme_figures --check                  # exit 1 when README.md differs (CI)
    python -m benchmarks.readme_figures --update-from runs/bench # keep new suite records, then rewrite

Each regenerated table sits in README.md between `<!-- figures:SUITE -->` and
`<!-- /figures:SUITE -->` and ends with a line naming the record it comes from: the date
of the run, the CPU, the library versions, as the suite recorded them (`common.provenance`).
Everything between the two markers is this script's; the prose around them is not.

Where the records live: `docs/figures/<suite>.json`, in the repository. `runs/` is
ignored by git and CI cannot rerun the slow suites, so a table that CI checks needs its
record committed beside the README. The record kept is the suite's own JSON, byte for
byte, not numbers copied out of it, so that every figure can be traced to what a suite
wrote. The suites still write to `runs/bench/` and only `--update-from` copies a record
into `docs/figures/`: a routine `make bench` (a noisy machine, a `--quick` or `--models`
run) then never changes the published figures behind anyone's back; publishing a run is
a step of its own, seen in the diff of `docs/figures/` and README.md together.

Figure tables of suites that have no renderer here yet (or no kept record) stay as they
were typed in, each followed in README.md by "(Typed in from the run of DATE; not yet
regenerated ...)". To bring one over: a renderer in TABLES that reads the suite's JSON,
the two markers around the table, then `--update-from runs/bench` after a run of the suite.

Exit codes: 0 done (or README matches), 1 README differs (`--check`), 2 a record is
missing or unreadable, or README's markers are broken; one line says which. README.md
is written atomically (`compressor.fsutil.write_text`), never half-written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures"


class FigureError(Exception):
    """A record or the README cannot give a table; the message is the one line shown."""


@dataclass(frozen=True)
class Table:
    suite: str                      # the suite module and its JSON's name
    libraries: tuple[str, ...]      # the versions the provenance line names
    render: Callable[[dict], list[str]]


MODEL_NAMES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "digits_cnn": "digits CNN"}


def _onnx_int8(d: dict) -> list[str]:
    from benchmarks.suite.onnx_int8 import MAX_SIZE_RATIO, TARGET_SPEEDUP

    lines = [f"| model (batch 1, {d['threads']} threads) | fp32 p50 | int8 p50 | int8 speedup | "
             "by-hand `quantize_static` | int8 size / fp32 | cosine int8 vs fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(d["results"]):
        need = TARGET_SPEEDUP.get(r["model"])
        speed = f"**{r['speedup']:.2f}x**" + (f" (target {need}x)" if need else "")
        size = f"**{r['size_ratio']:.3f}**" + (f" (target {MAX_SIZE_RATIO})" if i == 0 else "")
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['fp32_p50_ms']:.1f} ms | "
                     f"{r['int8_p50_ms']:.1f} ms | {speed} | {r['by_hand_speedup']:.2f}x | {size} | "
                     f"{r['cosine_mean']:.4f} |")
    return lines


def _tflite_sources(d: dict) -> list[str]:
    names = MODEL_NAMES
    variants = {"int8-dynamic": "dynamic int8", "int8-static": "full int8"}
    fp32_acc = next((r["fp32_accuracy"] for r in d["results"] if "fp32_accuracy" in r), None)
    acc_head = f"accuracy (fp32 {100 * fp32_acc:.2f}%)" if fp32_acc is not None else "accuracy"
    lines = [f"| float .tflite | variant | cosine mean / worst | speed vs fp32 | size vs fp32 | {acc_head} |",
             "|---|---|---:|---:|---:|---:|"]
    for r in d["results"]:
        for label, variant in variants.items():
            v = r[label]
            acc = f"{100 * v['accuracy']:.2f}%" if "accuracy" in v else ""
            lines.append(f"| {names.get(r['model'], r['model'])} | {variant} | {v['cosine_mean']:.4f} / "
                         f"{v['cosine_min']:.4f} | {1 / v['latency_ratio']:.2f}x | {v['size_ratio']:.2f}x | {acc} |")
    anchors = "; ".join(f"{names.get(r['model'], r['model'])} dynamic-range {r['tf_dynamic']['latency_ratio']:.2f}x, "
                        f"full int8 {r['tf_int8']['latency_ratio']:.2f}x" for r in d["results"])
    return lines + ["", f"TFLiteConverter's own int8 files of the same models, latency against fp32: {anchors}."]


def _onnx_sources(d: dict) -> list[str]:
    names = {**MODEL_NAMES, "keras_mobilenet_v2": "Keras MobileNetV2"}
    lines = ["| file (exporter) | fp32 p50 | ours static int8 | vs by hand (anchor) | vs `quantize_static` defaults "
             "| cosine ours / by hand |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        name = names.get(r["model"], r["model"])
        if "skipped" in r:
            lines.append(f"| {name} | not measured: {r['skipped']} | | | | |")
            continue
        # tf2onnx writes its version and git hash as the producer's version: "1.17.0 None" without one
        exporter = "legacy `torch.onnx.export`" if r["model"] in MODEL_NAMES else r["exporter"].removesuffix(" None")
        ms, vs = r["p50_ms"], r["speedup_vs_by_hand"]
        vs_hand = f"**{vs:.2f}x**" if vs >= d["min_vs_by_hand"] else f"{vs:.2f}x"
        lines.append(f"| {name} ({exporter}) | {ms['fp32']:.1f} ms | {ms['ours']:.1f} ms | {vs_hand} | "
                     f"{ms['by_hand_bare'] / ms['ours']:.2f}x | {r['cosine_mean']:.4f} / {r['by_hand_cosine_mean']:.4f} |")
    for r in d["results"]:
        if "fallback" in r:
            f = r["fallback"]
            lines += ["", f"{names.get(r['model'], r['model'])}: plain int8 reaches cosine {r['plain_cosine_mean']:.4f} "
                      f"(the anchor {r['by_hand_cosine_mean']:.4f}); the fallback keeps {f['float_nodes']} nodes float "
                      f"({f['lowering']} lowering); plain int8 ran {r['plain_speedup_vs_by_hand']:.2f}x the anchor's speed."]
    return lines


def _devices(d: dict) -> list[str]:
    from benchmarks.suite.devices import MAX_CONCURRENT_RATIO, MAX_OVERHEAD_S

    lines = ["| artifact | size | local p50 ms | loopback p50 ms | ratio |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['artifact']} | {r['size_bytes'] / 1e6:.1f} MB | {r['local_p50_ms']:.2f} | "
              f"{r['loopback_p50_ms']:.2f} | {r['ratio']:.3f} |" for r in d["results"]]
    o, c = d["overhead"], d["concurrency"]
    missed = " The suite marked this run MISSED: " + "; ".join(d["missed"]) + "." if d["missed"] else ""
    return lines + ["", f"Going remote costs {o['overhead_s']:.2f} s per artifact for the {o['bytes'] / 1e6:.1f} MB int8 "
                    "ONNX file (connect, copy and check, start the runner, load, fetch the outputs, clean up: the wall "
                    f"time less the device's own timing; target {MAX_OVERHEAD_S:.0f} s). 4 artifacts on 2 loopback "
                    f"devices (1 and 2 threads, pinned to CPUs 0 and 1) take {c['concurrent_s']:.1f} s at once against "
                    f"{c['serial_s']:.1f} s one device after the other ({c['ratio']:.2f}x; target "
                    f"{MAX_CONCURRENT_RATIO}x).{missed}"]


MINILM_ROWS = {  # the suite's label of an ONNX row: how the README names it
    "fp32 onnx": "fp32 ONNX",
    "static int8, ours": "**static int8, ours** ({int8_layers} of 36 linear layers int8)",
    "static int8, linear only": "static int8, `outliers: linear` (no rewrite)",
    "static int8, outliers off": "static int8, `outliers: off` (what the project did before)",
    "dynamic int8, ours": "**dynamic int8, ours**",
    "dynamic int8, outliers off": "dynamic int8, `outliers: off`",
    "dynamic int8, ORT by hand": "dynamic int8, ONNX Runtime's `quantize_dynamic` by hand (the anchor)",
}


def _minilm_int8(d: dict) -> list[str]:
    lines = ["| artifact | p50 | vs fp32 | size | worst sentence | mean |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        if r["target"] != "onnx" or r["label"] not in MINILM_ROWS:
            continue
        worst = f"**{r['cos_worst']:.4f}**" if r["label"].endswith("ours") else f"{r['cos_worst']:.4f}"
        lines.append(f"| {MINILM_ROWS[r['label']].format(**r)} | {r['p50_ms']:.1f} ms | {r['speedup']:.2f}x | "
                     f"{r['mb']:.1f} MB | {worst} | {r['cos_mean']:.4f} |")
    return lines


def _qat_digits(d: dict) -> list[str]:
    names = {"onnx": "ONNX", "tflite": "TFLite", "torchscript": "TorchScript"}

    def pct(x):
        return f"{100 * x:.2f}%" if x is not None else "-"

    lines = ["| digits CNN | fp32 | int8 PTQ (8-bit per-channel) | 3-bit PTQ | **3-bit QAT** | "
             "QAT latency / int8 PTQ |", "|---|---:|---:|---:|---:|---:|"]
    for t, f in d["figures"].items():
        ratio = f["latency_ratio_qat_vs_ptq_static"]
        lines.append(f"| {names.get(t, t)} | {pct(f['fp32_accuracy'])} | {pct(f['ptq_int8_static_accuracy'])} | "
                     f"{pct(f['ptq_3bit_accuracy'])} | **{pct(f['qat_3bit_accuracy'])}** | "
                     f"{f'{ratio:.2f}' if ratio is not None else '-'} |")
    families = {"x86": "x86 PT2E (ONNX)", "litert": "LiteRT PT2E (TFLite)", "fx": "FX (TorchScript)"}
    wall = ", ".join(f"{families.get(fam, fam)} {s:.1f} s" for fam, s in d["finetune_wall_s"].items())
    return lines + ["", f"Fine-tuning wall time per quantizer family: {wall}."]


TABLES = {t.suite: t for t in (
    Table("onnx_int8", ("onnxruntime", "onnx", "torch"), _onnx_int8),
    Table("onnx_sources", ("onnxruntime", "onnx", "torch", "tensorflow-cpu"), _onnx_sources),
    Table("tflite_sources", ("tensorflow-cpu", "ai-edge-litert"), _tflite_sources),
    Table("devices", ("onnxruntime", "ai-edge-litert"), _devices),
    Table("minilm_int8", ("onnxruntime", "onnx", "torch"), _minilm_int8),
    Table("qat_digits", ("torch", "torchao", "onnxruntime", "ai-edge-litert", "litert-torch"), _qat_digits),
)}


def load(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FigureError(f"{path}: missing; run `python -m benchmarks.suite.{path.stem}`, then "
                          f"`python -m benchmarks.readme_figures --update-from runs/bench`") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FigureError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise FigureError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rerun its suite") from None
    if not isinstance(d, dict) or d.get("suite") != path.stem:
        raise FigureError(f"{path}: not a record of the suite {path.stem!r}; rerun its suite")
    return d


def provenance(d: dict, path: str, libraries: tuple[str, ...]) -> str:
    date = d.get("date", "")
    when = f"the run of {date[:10]} {date[11:16]} UTC" if len(date) >= 16 else "a run that recorded no date"
    cpu = d["machine"]["cpu"]
    vnni = ", AVX-512 VNNI" if "avx512_vnni" in cpu.get("kernel_flags", []) else ""
    libs = ", ".join(f"{n} {d['libraries'][n]}" for n in libraries if n in d.get("libraries", {}))
    return (f"(Regenerated by `python -m benchmarks.readme_figures` from `{path}`: {when} on "
            f"{cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores{vnni}), "
            f"Python {d['machine']['python']}, {libs}.)")


def render(table: Table, figures: Path, readme_dir: Path = ROOT) -> str:
    """The table's Markdown and its provenance line, the record named as the README reaches it."""
    path = figures / f"{table.suite}.json"
    d = load(path)
    shown = Path(os.path.relpath(path.absolute(), readme_dir.absolute())).as_posix()
    try:
        lines = table.render(d) + ["", provenance(d, str(shown), table.libraries)]
    except (KeyError, TypeError, ValueError) as e:
        raise FigureError(f"{path}: lacks what the table needs ({type(e).__name__}: {e}); rerun its suite") from None
    return "\n".join(lines)


def block_re(suite: str) -> re.Pattern:
    return re.compile(rf"(<!-- figures:{suite} -->\n)(.*?)(<!-- /figures:{suite} -->)", re.S)


def regenerate(text: str, figures: Path, readme_dir: Path = ROOT) -> tuple[str, list[str]]:
    """README text with every table rewritten, and the suites whose tables changed."""
    changed = []
    for suite, table in TABLES.items():
        found = block_re(suite).findall(text)
        if len(found) != 1:
            raise FigureError(f"README.md: {len(found)} blocks <!-- figures:{suite} --> ... "
                              f"<!-- /figures:{suite} --> (need exactly one)")
        body = render(table, figures, readme_dir) + "\n"
        if found[0][1] != body:
            changed.append(suite)
        text = block_re(suite).sub(lambda m: m.group(1) + body + m.group(3), text)
    return text, changed


def update_from(src: Path, figures: Path) -> list[str]:
    """Copy the records of the README's suites found in `src` into `figures`, checked first."""
    from compressor.fsutil import write_text

    found = [src / f"{suite}.json" for suite in TABLES if (src / f"{suite}.json").exists()]
    for path in found:  # all of them checked before any is kept: no half-updated docs/figures
        load(path)
    for path in found:
        write_text(figures / path.name, path.read_text(encoding="utf-8"))
    return [path.stem for path in found]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.readme_figures", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when README.md differs")
    ap.add_argument("--update-from", type=Path, metavar="DIR", help="copy suite records from DIR (runs/bench) first")
    ap.add_argument("--readme", type=Path, default=README, help="the README to rewrite or check (README.md)")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="the kept records (docs/figures)")
    args = ap.parse_args(argv)
    if args.check and args.update_from:
        ap.error("--check writes nothing, --update-from writes docs/figures: give one of them")
    from compressor.fsutil import write_text

    try:
        if args.update_from:
            kept = update_from(args.update_from, args.figures)
            print(f"kept {', '.join(kept) or 'nothing'} from {args.update_from} in {args.figures}")
        try:
            text = args.readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FigureError(f"{args.readme}: cannot be read ({e})") from None
        new, changed = regenerate(text, args.figures, args.readme.parent)
        if changed and not args.check:
            write_text(args.readme, new)
    except (FigureError, OSError) as e:  # OSError: docs/figures or README.md not writable, a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if not changed:
            return 0
        n = sum(1 for ln in difflib.unified_diff(text.splitlines(), new.splitlines(), lineterm="", n=0)
                if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))
        print(f"{args.readme.name}: {n} lines of the figures of {', '.join(changed)} differ from "
              f"{args.figures.name}/*.json; run `python -m benchmarks.readme_figures`")
        return 1
    print(f"{args.readme.name}: {'rewrote ' + ', '.join(changed) if changed else 'figures up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
