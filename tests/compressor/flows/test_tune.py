"""`compressor tune` on the shipped digits CNN with ONNX Runtime: a 3-trial study that is
interrupted after 2 and continued from its SQLite storage; the budget, the front and the
seeded static int8 trial checked on real measurements; bad storage or space: exit 2."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from compressor.flows.cli import main
from compressor.config.recipe import load_recipe
from compressor.flows.tune.report import non_dominated
from recipes import digits_head

MAX_DROP, MIN_COSINE = 1.0, 0.995
RECIPE = digits_head("tuned", calibration=128, evaluation=True) + f"""\
targets: [onnx]
benchmark: {{batch_sizes: [1], runs: 20, warmup: 2, warmup_s: 0.02, memory: false}}
tune:
  trials: 3
  seed: 3
  budget: {{max_accuracy_drop: {MAX_DROP}, min_cosine: {MIN_COSINE}}}
  benchmark: {{runs: 20, warmup: 2, warmup_s: 0.02}}
  space:
    # Channel pruning without fine-tuning: accuracy falls with the ratio, so some trials miss the budget.
    prune: {{ratio: [0.0, 0.6], finetune_epochs: 0}}
    modes: [static, dynamic, fp16]
    calibration: [minmax, percentile]
    per_channel: [true, false]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict, dict]:
    """Two trials, then the same command asking for three: the study goes on from storage."""
    d = tmp_path_factory.mktemp("tune")
    recipe = d / "r.yaml"
    recipe.write_text(RECIPE)
    out = d / "study"
    assert main(["tune", str(recipe), "--out", str(out), "--trials", "2", "--no-progress"]) == 0
    first = json.loads((out / "tune.json").read_text())
    assert main(["tune", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return out, first, json.loads((out / "tune.json").read_text())


def test_resume_continues_the_trial_count_from_storage(study):
    out, first, second = study
    assert [t["number"] for t in first["trials"]] == [0, 1]
    assert [t["number"] for t in second["trials"]] == [0, 1, 2]
    # The first run's trials are read back from the database, not run again.
    for a, b in zip(first["trials"], second["trials"]):
        assert (a["p50_ms"], a["size_bytes"], a["accuracy"]) == (b["p50_ms"], b["size_bytes"], b["accuracy"])
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 3
    # Plain static int8 is seeded once, as the first trial, and not again on resume.
    roles = [t["role"] for t in second["trials"]]
    assert roles == ["baseline", "search", "search"]
    assert second["trials"][0]["config"]["mode"] == "static" and second["baseline"] == 0


def test_feasible_trials_respect_the_budget_and_the_front_is_non_dominated(study):
    _, _, report = study
    trials = report["trials"]
    base = trials[0]
    assert base["state"] == "complete" and base["accuracy"] > 0.98  # static int8 keeps the digits CNN's accuracy
    assert 0 < base["p50_ms"] < 50 and 10_000 < base["size_bytes"] < 200_000
    for t in trials:
        if t["state"] != "complete":
            continue
        holds = t["accuracy_drop"] <= MAX_DROP and t["cosine"] >= MIN_COSINE
        assert t["feasible"] == holds, t
        assert t["accuracy_drop"] == pytest.approx(100 * (t_ref(report, t) - t["accuracy"]))
    feasible = {t["number"]: t for t in trials if t["feasible"]}
    assert set(report["front"]) <= set(feasible)
    for n in report["front"]:  # nothing feasible beats a front member on both latency and size
        a = feasible[n]["values"]
        assert not any(all(x <= y for x, y in zip(b["values"], a)) and b["values"] != a for b in feasible.values())
    for n, t in feasible.items():  # and every feasible trial off the front is beaten by a front member
        if n not in report["front"]:
            assert any(all(x <= y for x, y in zip(feasible[f]["values"], t["values"])) for f in report["front"])
    assert report["best"] in report["front"]
    assert report["verdict"] and "\n" not in report["verdict"]


def t_ref(report: dict, t: dict) -> float:
    return t["accuracy"] + t["accuracy_drop"] / 100  # the fp32 model's accuracy the drop is measured from


def test_outputs_and_the_winning_recipe_runs_as_a_recipe(study):
    out, _, report = study
    md = (out / "tune.md").read_text()
    assert report["verdict"] in md and "Pareto front" in md
    assert "<svg" in (out / "tune.html").read_text()
    best = load_recipe(out / "best.yaml")
    assert best.tune is None and len(best.quant_variants) + len(best.qat_steps) == 1
    cfg = next(t for t in report["trials"] if t["number"] == report["best"])["config"]
    assert best.quant_variants[0].mode == cfg["mode"]
    assert bool(best.prune_steps) == (cfg["prune_ratio"] > 0)
    assert (out / "trials" / "trial-0000" / "report.json").is_file()


def test_non_dominated():
    pts = [(1.0, 5.0), (2.0, 2.0), (1.5, 6.0), (3.0, 1.0), (2.0, 2.0), (2.5, 2.5)]
    assert non_dominated(pts) == [0, 1, 3, 4]


@pytest.mark.parametrize("args, says", [
    (["--storage", "not a url"], "is not a database URL"),
    (["--storage", "nosuchdialect://host/db"], "cannot open the study storage"),
])
def test_bad_storage_is_one_line_exit_2(tmp_path, capsys, args, says):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    assert main(["tune", str(recipe), "--out", str(tmp_path / "s"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "tune.json").exists()


@pytest.mark.parametrize("old, new, says", [
    ("ratio: [0.0, 0.6]", "ratio: [0.6, 0.1]", "low <= high"),
    ("modes: [static, dynamic, fp16]", "modes: [static, int4]", "int4"),
    ("per_channel: [true, false]", "per_chanel: [true, false]", "did you mean 'per_channel'"),
    ("trials: 3", "trials: 3\n  target: tflite", "not among the recipe's targets"),
    ("  evaluation: {source: digits, split: test}\n", "", "needs accuracy"),
])
def test_bad_space_is_one_line_exit_2(tmp_path, capsys, old, new, says):
    recipe = tmp_path / "r.yaml"
    assert old in RECIPE
    recipe.write_text(RECIPE.replace(old, new))
    assert main(["tune", str(recipe), "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


INC_RECIPE = RECIPE.split("tune:")[0] + f"""\
tune:
  engine: inc
  trials: 2
  budget: {{max_accuracy_drop: {MAX_DROP}}}
  benchmark: {{runs: 20, warmup: 2, warmup_s: 0.02}}
"""


def test_inc_engine_quantizes_with_autotune_and_hands_the_graph_to_onnx(tmp_path):
    import onnx

    recipe = tmp_path / "r.yaml"
    recipe.write_text(INC_RECIPE)
    assert main(["tune", str(recipe), "--out", str(tmp_path / "inc"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "inc" / "tune.json").read_text())
    assert report["engine"] == "inc" and report["trials"][0]["role"] == "baseline"
    inc = [t for t in report["trials"] if t["role"] == "inc" and t["state"] == "complete"]
    assert len(inc) == 1, report["trials"]
    t = inc[0]
    # Measured by ONNX Runtime on the held-out digits, not INC's PyTorch figure.
    assert t["accuracy_drop"] <= MAX_DROP and t["feasible"] and t["cosine"] > 0.99
    ops = {n.op_type for n in onnx.load(t["artifact"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # INC's model and plain static int8 are measured again side by side: the speedup is the
    # ratio of the two medians the report states, and the trial figures match the rows.
    base, cmp = report["trials"][0], report["comparison"]
    assert cmp["confirmed"] and cmp["rounds"] >= 1
    assert 0 < cmp["best_p50_ms"] < 50 and 0 < cmp["baseline_p50_ms"] < 50
    assert cmp["speedup"] == pytest.approx(cmp["baseline_p50_ms"] / cmp["best_p50_ms"])
    assert cmp["trial_speedup"] == pytest.approx(base["latency"] / t["latency"])
    assert cmp["size_ratio"] == pytest.approx(t["size_bytes"] / base["size_bytes"])
    assert 0.1 < cmp["speedup"] < 10 and 0.1 < cmp["trial_speedup"] < 10  # two int8 builds of one small CNN
    assert report["verdict"] and "\n" not in report["verdict"]


def test_inc_engine_refuses_targets_that_cannot_lower_its_graph(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(INC_RECIPE.replace("targets: [onnx]", "targets: [torchscript]"))
    assert main(["tune", str(recipe), "--out", str(tmp_path / "inc"), "--no-progress"]) == 2
    assert "engine inc hands PT2E x86 graphs to the onnx target" in capsys.readouterr().err
