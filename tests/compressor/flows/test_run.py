"""One small recipe run end to end (export, validate, benchmark, report), shared by the tests."""

import json
import re
from pathlib import Path

import pytest

import targets
from compressor.fsutil import sha256
from compressor.flows.run import run
from compressor.config.recipe import load_recipe
from compressor.zoo.digits import WEIGHTS_PATH
from recipes import digits_head

ZOO = WEIGHTS_PATH
RECIPE = digits_head("small", calibration=64, evaluation=200) + """\
steps:
  - quantize:
      variants: [{mode: static}, {mode: fp16}]
targets: [onnx]
benchmark: {batch_sizes: [1, 4], runs: 5, warmup: 1, warmup_s: 0, memory: false}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pipeline")
    (d / "small.yaml").write_text(RECIPE)
    run(load_recipe(d / "small.yaml", targets.option_models()), d / "run", show_progress=False)
    return d / "run"


@pytest.fixture(scope="module")
def report(run_dir) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_run_writes_reports_manifest_and_only_the_artifacts(run_dir):
    assert {p.name for p in run_dir.iterdir()} == {"report.json", "report.md", "report.html", "manifest.json",
                                                  "artifacts", ".compressor-run.json", ".compressor.lock"}
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == [
        "small.fp16.onnx", "small.fp32.onnx", "small.int8-static.onnx"]


def test_report_json_has_one_row_per_artifact_with_metrics_fidelity_accuracy(report):
    assert report["schema"] == "compressor.report" and report["schema_version"] == 2
    assert [r["name"] for r in report["artifacts"]] == ["onnx/fp32", "onnx/int8-static", "onnx/fp16"]
    for row in report["artifacts"]:
        assert row["status"] == "ok"
        m = row["metrics"]
        assert [lat["batch"] for lat in m["latency"]] == [1, 4]
        assert all(0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] for lat in m["latency"])
        assert m["size_bytes"] > m["gzip_bytes"] > 0
        assert m["accuracy"] >= 0.97 and m["eval_samples"] == 200
        assert row["fidelity"]["samples"] == 200 and row["fidelity"]["on_real_data"] is True
        assert abs(row["accuracy_delta"]) <= 0.01


def test_report_reference_is_the_pytorch_accuracy_on_the_evaluation_data(report):
    ref = report["reference"]
    assert ref["framework"] == "pytorch" and ref["eval_samples"] == 200 and ref["accuracy"] >= 0.97


def test_fp32_row_matches_pytorch_tightly(report):
    fid = report["artifacts"][0]["fidelity"]
    assert fid["max_abs"] < 1e-4 and fid["cosine_mean"] > 0.99999 and fid["top1_agreement"] == 1.0


def test_int8_row_compares_against_fp32_size(report):
    row = report["artifacts"][1]
    assert row["size_ratio_vs_fp32"] <= 0.35


def _latency(row: dict, batch: int) -> dict:
    return next(lat for lat in row["metrics"]["latency"] if lat["batch"] == batch)


def test_speedup_is_fp32_p50_over_each_rows_p50_at_the_reports_batch(report, run_dir):
    from benchmarks.stats import significantly_slower

    batch = report["benchmark"]["batch_sizes"][0]
    assert batch == 1
    fp32, *others = report["artifacts"]
    # fp32 is the baseline: no ratio against itself in the JSON, exactly 1.00x in the table.
    assert fp32["label"] == "fp32" and "speedup_vs_fp32" not in fp32 and "slower_than_fp32" not in fp32
    lines = (run_dir / "report.md").read_text().splitlines()
    header = next([c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| artifact"))
    table = {cells[0]: dict(zip(header, cells)) for cells in
             ([c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| onnx/"))
             if len(cells) == len(header)}
    assert table["onnx/fp32"]["speedup"] == "1.00x" and table["onnx/fp32"]["status"] == "ok"
    base = _latency(fp32, batch)
    assert [r["label"] for r in others] == ["int8-static", "fp16"]
    for row in others:
        lat = _latency(row, batch)
        speedup = base["p50_ms"] / lat["p50_ms"]
        assert row["speedup_vs_fp32"] == pytest.approx(speedup, rel=1e-9), row["name"]
        assert row["size_ratio_vs_fp32"] == pytest.approx(row["metrics"]["size_bytes"] / fp32["metrics"]["size_bytes"])
        slower = speedup < 0.97 and significantly_slower(lat["samples_ms"], base["samples_ms"])
        assert row.get("slower_than_fp32", False) is slower, row["name"]
        assert table[row["name"]]["speedup"] == f"{speedup:.2f}x"
        assert table[row["name"]]["status"] == ("⚠ slower than fp32" if slower else "ok")
        said = [n for n in row["notes"] if "fp32" in n]
        if speedup >= 1.0:
            assert said == []
        elif slower:
            assert said == [f"SLOWER than fp32 onnx ({speedup:.2f}x at batch {batch}): "
                            "do not ship it for speed on this machine"]
        else:
            assert said == [f"no measurable speedup over fp32 onnx at batch {batch} "
                            "(the difference is within the timing noise)"]


def test_report_md_is_a_markdown_table_with_one_line_per_artifact(run_dir):
    lines = (run_dir / "report.md").read_text().splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("| artifact"))
    assert re.fullmatch(r"\|(-{3}:?\|)+", lines[header + 1])
    body = lines[header + 2:header + 5]
    assert [b.split("|")[1].strip() for b in body] == ["onnx/fp32", "onnx/int8-static", "onnx/fp16"]


def test_manifest_hashes_every_artifact_and_records_versions_and_cpu(run_dir):
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["schema_version"] == 1
    files = {a["file"]: a for a in man["artifacts"]}
    assert set(files) == {f"artifacts/{p.name}" for p in (run_dir / "artifacts").iterdir()}
    for rel, entry in files.items():
        assert entry["sha256"] == sha256(run_dir / rel)
        assert entry["bytes"] == (run_dir / rel).stat().st_size
    assert {"torch", "onnxruntime", "onnx", "compressor"} <= set(man["libraries"])
    assert man["machine"]["cpu"]["model"]
    assert man["model"]["sha256"] == sha256(ZOO)
    assert man["recipe"]["text"] == RECIPE


def test_a_second_run_into_the_same_dir_needs_overwrite(run_dir):
    from compressor.errors import RecipeError

    recipe = load_recipe(run_dir.parent / "small.yaml", targets.option_models())
    with pytest.raises(RecipeError, match="holds a finished run; pass --overwrite"):
        run(recipe, run_dir, show_progress=False)


def test_external_data_run_lists_both_files_with_sha256(tmp_path):
    text = RECIPE.replace("targets: [onnx]", "targets: {onnx: {external_data: true}}").replace(
        "variants: [{mode: static}, {mode: fp16}]", "variants: [{mode: dynamic}]")
    (tmp_path / "ext.yaml").write_text(text)
    report = run(load_recipe(tmp_path / "ext.yaml", targets.option_models()), tmp_path / "run",
                 show_progress=False)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    by_file = {a["file"]: a for a in man["artifacts"]}
    for label in ("fp32", "int8-dynamic"):
        onnx_file, data_file = f"artifacts/small.{label}.onnx", f"artifacts/small.{label}.onnx.data"
        assert {onnx_file, data_file} <= set(by_file)
        assert by_file[data_file]["sha256"] == sha256(tmp_path / "run" / data_file)
        row = next(r for r in report["artifacts"] if r["label"] == label)
        assert row["metrics"]["size_bytes"] == by_file[onnx_file]["bytes"] + by_file[data_file]["bytes"]


def test_recipe_budgets_gate_the_run_with_exit_1(tmp_path, capsys):
    from compressor.flows.cli import main

    recipe = RECIPE.replace("steps:\n  - quantize:\n      variants: [{mode: static}, {mode: fp16}]\n", "") + \
        "budgets:\n  limits:\n    '*': {max_size: 1KB, max_accuracy_drop: 0.5}\n"
    (tmp_path / "r.yaml").write_text(recipe)
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "FAIL onnx/fp32: max_size 1.0 KB, measured" in out
    assert err.strip().startswith("compressor: error: 1 budget exceeded")
    assert {"gate.xml", "gate.json", "gate.md", "report.json"} <= {p.name for p in (tmp_path / "run").iterdir()}


def test_the_run_recommends_the_fastest_validated_artifact_and_the_gate_holds_it(tmp_path, capsys, report):
    from compressor.flows.cli import main

    rec = report["recommended"]["local"]
    measured = {r["name"]: next(l["p50_ms"] for l in r["metrics"]["latency"] if l["batch"] == 1)
                for r in report["artifacts"]}
    assert rec["artifact"] == min(measured, key=measured.get)
    assert rec["fastest_fp32"] == "onnx/fp32" and rec["speedup"] == pytest.approx(measured["onnx/fp32"] /
                                                                                 measured[rec["artifact"]])
    # budgets: every int8 row over a 1 KB limit, so the recommendation moves off int8 and
    # the gate fails the 1000x speedup asked of it, naming what it compared
    recipe = RECIPE + "budgets:\n  limits:\n    '*/int8': {max_size: 1KB}\n  recommended: {min_speedup: 1000}\n"
    (tmp_path / "r.yaml").write_text(recipe)
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    out, _ = capsys.readouterr()
    got = json.loads((tmp_path / "run" / "report.json").read_text())["recommended"]["local"]
    assert got["artifact"] in ("onnx/fp32", "onnx/fp16") and got["over_budget"] == ["onnx/int8-static"]
    assert re.search(r"FAIL recommended on local: min_speedup 1000x, measured [0-9.]+x, under by [0-9.]+% \(onnx/fp", out)
    assert f"recommended on local: {got['artifact']}" in out
    gate = json.loads((tmp_path / "run" / "gate.json").read_text())
    assert any(c["artifact"] == "recommended on local" for c in gate["checks"])
