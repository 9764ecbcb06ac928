"""README.md's figure tables against the suite records kept in docs/figures: the check CI
runs, one table rendered from its real record, the one-line errors, and --check writing
nothing."""

import json
import shutil

from benchmarks import readme_figures as rf


def test_readme_tables_are_what_the_kept_records_give(capsys):
    # An edit of a regenerated table, or a new record without regenerating, fails here.
    assert rf.main(["--check"]) == 0, capsys.readouterr().out


def test_onnx_int8_table_from_its_kept_record():
    record = json.loads((rf.FIGURES / "onnx_int8.json").read_text())
    text = rf.render(rf.TABLES["onnx_int8"], rf.FIGURES)
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "ms |" in ln]
    assert len(rows) == len(record["results"])
    for row, r in zip(rows, record["results"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{r['fp32_p50_ms']:.1f} ms" and cells[2] == f"{r['int8_p50_ms']:.1f} ms"
        assert cells[3].startswith(f"**{r['speedup']:.2f}x**")
        assert cells[5].startswith(f"**{r['size_ratio']:.3f}**") and cells[6] == f"{r['cosine_mean']:.4f}"
    last = text.splitlines()[-1]
    assert "docs/figures/onnx_int8.json" in last and record["date"][:10] in last
    assert record["machine"]["cpu"]["model"] in last and f"onnxruntime {record['libraries']['onnxruntime']}" in last


def test_demo_and_runtimes_tables_from_their_kept_records():
    demo = json.loads((rf.FIGURES / "demo_int8.json").read_text())
    text = rf.render(rf.TABLES["demo_int8"], rf.FIGURES)
    for batch, t in demo["interleaved"].items():
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| p50 at batch {batch}, interleaved |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{t['median_ms']['fp32']:.3f} ms" and cells[3] == f"**{t['speedup']:.2f}x** faster"
    assert f"**{demo['figures']['size_ratio']:.2f}x** smaller" in text and "demo_int8.json" in text.splitlines()[-1]
    runtimes = json.loads((rf.FIGURES / "runtimes.json").read_text())
    text = rf.render(rf.TABLES["runtimes"], rf.FIGURES)
    for r in runtimes["results"]:  # one row in each of the two tables per model and thread count
        name = rf.tables.MODEL_NAMES.get(r["model"], r["model"])
        rows = [ln for ln in text.splitlines() if ln.startswith(f"| {name} | {r['threads']} |")]
        assert len(rows) == 2 and f"{r['speedup']:.2f}x" in rows[0] and r["recommended"] in rows[0]
        assert rows[1].split("|")[3].strip() == f"{r['openvino_ours_vs_by_hand']:.2f}"
    assert ("missed" in text) == any(r["speedup"] < 2.3 and r["model"] == "mobilenet_v2" for r in runtimes["results"])


def _copies(tmp_path):
    readme, figures = tmp_path / "README.md", tmp_path / "docs" / "figures"
    shutil.copy(rf.README, readme)
    shutil.copytree(rf.FIGURES, figures)
    return readme, figures


def _run(capsys, *args):
    code = rf.main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip().splitlines()


def test_missing_and_corrupt_records_are_one_line_and_exit_2(tmp_path, capsys):
    readme, figures = _copies(tmp_path)
    before = readme.read_bytes()
    (figures / "onnx_int8.json").unlink()
    code, _, err = _run(capsys, "--readme", readme, "--figures", figures)
    assert code == 2 and len(err) == 1 and "onnx_int8.json: missing" in err[0]
    (figures / "onnx_int8.json").write_text('{"suite": "onnx_int8", "results": [')
    code, _, err = _run(capsys, "--readme", readme, "--figures", figures)
    assert code == 2 and len(err) == 1 and "not valid JSON" in err[0]
    (figures / "onnx_int8.json").write_text('{"suite": "onnx_int8", "threads": 2}')
    code, _, err = _run(capsys, "--check", "--readme", readme, "--figures", figures)
    assert code == 2 and len(err) == 1 and "lacks what the table needs" in err[0]
    assert readme.read_bytes() == before


def test_check_writes_nothing_and_a_rewrite_restores_the_table(tmp_path, capsys):
    readme, figures = _copies(tmp_path)
    text = readme.read_text()
    start = text.index("<!-- figures:onnx_int8 -->")
    row = text.index("| ResNet-18 |", start)
    edited = text[:row] + text[row:].replace(" ms |", " ms (typed) |", 1)
    readme.write_text(edited)
    code, out, _ = _run(capsys, "--check", "--readme", readme, "--figures", figures)
    assert code == 1 and len(out) == 1 and "onnx_int8" in out[0] and "differ" in out[0]
    assert readme.read_text() == edited
    code, out, _ = _run(capsys, "--readme", readme, "--figures", figures)
    assert code == 0 and readme.read_text() == text


def test_update_from_keeps_a_new_record_and_rewrites(tmp_path, capsys):
    readme, figures = _copies(tmp_path)
    record = json.loads((figures / "onnx_int8.json").read_text())
    record["results"][0]["speedup"] = 9.87
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "onnx_int8.json").write_text(json.dumps(record))
    code, out, _ = _run(capsys, "--update-from", runs, "--readme", readme, "--figures", figures)
    assert code == 0 and "kept onnx_int8" in out[0]
    assert json.loads((figures / "onnx_int8.json").read_text())["results"][0]["speedup"] == 9.87
    assert "**9.87x**" in readme.read_text()


def test_a_readme_without_the_markers_is_refused_in_one_line(tmp_path, capsys):
    readme, figures = _copies(tmp_path)
    readme.write_text(readme.read_text().replace("<!-- /figures:onnx_int8 -->", ""))
    code, _, err = _run(capsys, "--check", "--readme", readme, "--figures", figures)
    assert code == 2 and len(err) == 1 and "figures:onnx_int8" in err[0]


def test_update_from_keeps_nothing_when_one_record_is_corrupt(tmp_path, capsys):
    readme, figures = _copies(tmp_path)
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    runs = tmp_path / "runs"
    runs.mkdir()
    record = json.loads((figures / "onnx_int8.json").read_text())
    record["results"][0]["speedup"] = 9.87
    (runs / "onnx_int8.json").write_text(json.dumps(record))
    (runs / "qat_digits.json").write_text("{")
    code, _, err = _run(capsys, "--update-from", runs, "--readme", readme, "--figures", figures)
    assert code == 2 and len(err) == 1 and "qat_digits.json: not valid JSON" in err[0]
    assert {p.name: p.read_bytes() for p in figures.iterdir()} == before
