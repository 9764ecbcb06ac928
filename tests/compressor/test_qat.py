"""The qat step through `compressor run`: QAT recovers what PTQ loses (3-bit per-tensor
weights on the digits CNN), the ONNX artifact keeps the learned scales as QDQ that ONNX
Runtime fuses; resume, a refused checkpoint, a NaN loss, bad input: one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from compressor.flows.cli import main
from compressor.zoo.digits import WEIGHTS_PATH
from recipes import digits_head

ZOO = WEIGHTS_PATH
HEAD = digits_head("qat", evaluation=True, train=True) + """\
targets: [onnx]
benchmark: {batch_sizes: [1], runs: 5, warmup: 1, warmup_s: 0, memory: false}
"""
LOSSY = """\
steps:
  - qat:
      weight_bits: 3
      per_channel: false
      sensitivity: {keep_most_sensitive: 0, samples: 64}
      freeze_bn_after: 4
      freeze_observers_after: 5
      finetune: {epochs: 6, lr: 0.001}
"""


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qat-run")
    (d / "r.yaml").write_text(HEAD + LOSSY)
    assert main(["run", str(d / "r.yaml"), "--out", str(d / "run"), "--no-progress"]) == 0
    return d / "run"


@pytest.mark.slow  # more than 15 s on 2 cores
def test_qat_recovers_what_ptq_loses_on_onnx(qat_run):
    report = json.loads((qat_run / "report.json").read_text())
    rows = {r["label"]: r for r in report["artifacts"]}
    fp32 = report["reference"]["accuracy"]
    assert fp32 == pytest.approx(0.9933, abs=1e-3)
    assert rows["int8-ptq-same"]["metrics"]["accuracy"] < fp32 - 0.05      # PTQ loses clearly
    assert rows["int8-qat"]["metrics"]["accuracy"] >= fp32 - 0.003          # QAT within 0.3 points
    # The learned quantization is in the file as QDQ, and ONNX Runtime fuses it to int8 kernels.
    export = rows["int8-qat"]["export"]
    assert export["op_types"].get("QuantizeLinear") and export["op_types"].get("DequantizeLinear")
    assert export["ort_fused_ops"].get("QLinearConv", 0) == 4 and "Conv" not in export["ort_fused_ops"]
    # Validated against the QAT model it came from.
    assert rows["int8-qat"]["fidelity"]["top1_agreement"] >= 0.99
    q = report["qat"]
    assert q["families"]["x86"]["finetune"]["train_wall_s"] > 0 and len(q["families"]["x86"]["finetune"]["epochs"]) == 6
    assert set(q["sensitivity"]) == {"features.0.0", "features.1.0", "features.3.0", "features.4.0", "classifier"}
    assert "sensitivity (relative output error)" in report["per_layer"]
    assert (qat_run / "checkpoints" / "qat-x86.pt").is_file()
    assert "QAT (3-bit per-tensor weights)" in (qat_run / "report.md").read_text()


@pytest.mark.slow  # more than 15 s on 2 cores
def test_mismatched_checkpoint_is_refused(qat_run, tmp_path, capsys):
    other = tmp_path / "run"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(qat_run / "checkpoints" / "qat-x86.pt", other / "checkpoints")
    (tmp_path / "r.yaml").write_text(HEAD + LOSSY.replace("lr: 0.001", "lr: 0.002"))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(other), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different model or recipe" in err, err


@pytest.fixture(scope="module")
def small():
    from compressor.data import load_dataset
    from compressor.model import load_model
    from compressor.config.recipe import DataSource, InputSpec, ModelSpec

    inputs = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]
    model = load_model(ModelSpec(factory="compressor.zoo.digits:digits_cnn", weights=ZOO, inputs=inputs))
    train = load_dataset(DataSource(source="digits", split="train", limit=256), inputs)
    return model, train


def _step(**kw):
    from compressor.config.qat import QatStep

    return QatStep(weight_bits=4, per_channel=False, compare_ptq=False, calibration_samples=64,
                   freeze_observers_after=2, finetune={"epochs": 3, "lr": 1e-3}, **kw)


@pytest.mark.slow  # over 30 s: `make test-slow` and CI run it
def test_resume_after_a_kill_continues_where_it_stopped(small, tmp_path, monkeypatch):
    from compressor.qat import checkpoint
    from compressor.qat.run import qat_family

    model, train = small
    whole = qat_family(model, _step(), "x86", train, None, [], tmp_path / "a.pt", "fp", False)
    real_save = checkpoint.save

    def killed_after_epoch_1(path, fp, family, module_state, loop_state, frozen):
        real_save(path, fp, family, module_state, loop_state, frozen)
        raise KeyboardInterrupt  # the process dies right after the epoch-1 checkpoint

    monkeypatch.setattr(checkpoint, "save", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        qat_family(model, _step(), "x86", train, None, [], tmp_path / "b.pt", "fp", False)
    monkeypatch.setattr(checkpoint, "save", real_save)
    resumed = qat_family(model, _step(), "x86", train, None, [], tmp_path / "b.pt", "fp", True)
    assert resumed.resumed_from_epoch == 1 and len(resumed.history.epochs) == 3
    a, b = whole.qat.module.state_dict(), resumed.qat.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(small, tmp_path, monkeypatch):
    from compressor.errors import TrainingError
    from compressor.qat import checkpoint
    from compressor.qat.run import qat_family

    model, train = small
    real_save = checkpoint.save
    poisoned = {}

    def save_then_poison(path, fp, family, module_state, loop_state, frozen):
        real_save(path, fp, family, module_state, loop_state, frozen)
        if not poisoned:  # a weight turns NaN after epoch 1, as a diverging run's would
            poisoned["state"] = module_state
            w = next(v for k, v in module_state.items() if k.endswith("classifier.weight"))
            w.data.fill_(float("nan"))

    monkeypatch.setattr(checkpoint, "save", save_then_poison)
    path = tmp_path / "c.pt"
    with pytest.raises(TrainingError, match=r"at step 5 \(epoch 2\).*last good checkpoint \(epoch 1\)"):
        qat_family(model, _step(), "x86", train, None, [], path, "fp", False)
    saved = torch.load(path, weights_only=True)
    assert saved["loop"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["module"].values() if v.is_floating_point())


BAD = [
    ("", "qat:\n      finetune: {epochs: 1}", "needs", "training data"),
    ("train", "qat:\n      keep_float: [clasifier]\n      finetune: {epochs: 1}", "", "did you mean 'classifier'"),
    ("train", "qat:\n      freeze_bn_after: 5\n      finetune: {epochs: 2}", "", "past the last epoch"),
]


@pytest.mark.parametrize("train,body,_,message", BAD)
def test_bad_qat_input_is_one_line_and_exit_2(tmp_path, capsys, train, body, _, message):
    head = HEAD if train else HEAD.replace("  train: {source: digits, split: train}\n", "")
    (tmp_path / "r.yaml").write_text(head + f"steps:\n  - {body}\n")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_mixed_precision_keeps_named_and_most_sensitive_layers_float(small):
    from compressor.config.qat import QatStep
    from compressor.qat.graph import prepare
    from compressor.qat.run import plan_keep_float

    model, train = small
    step = QatStep(weight_bits=3, per_channel=False, keep_float=["classifier"],
                   sensitivity={"keep_most_sensitive": 1, "samples": 64})
    keep, scores = plan_keep_float(model, step, train)
    assert "classifier" not in scores and len(scores) == 4 and all(v > 0 for v in scores.values())
    worst = max(scores, key=scores.get)
    assert keep == {"classifier": "named in the recipe (keep_float)", worst: keep[worst]}
    assert keep[worst].startswith("most sensitive")
    # The kept layers get no weight fake-quantizer: 5 layers, 2 float -> 3 quantized weights.
    prepared = prepare("x86", model.module, model.example_inputs(batch=2), 3, False, list(keep), qat=True)
    weight_fqs = [m for m in prepared.modules() if type(m).__name__ == "FusedMovingAvgObsFakeQuantize"
                  and m.quant_min == -3]
    assert len(weight_fqs) == 3
