"""Per-layer sensitivity, module-name exclusion and the int8 float fallback, on a tiny
squeeze-excite net that plain static int8 breaks (fragile_models.py), with the real
runtimes (onnxruntime, TorchScript) checking every number."""

import json
from pathlib import Path

import onnx
import pytest

import targets
from compressor.flows.cli import main
from compressor.data import load_dataset
from compressor.errors import RecipeError
from compressor.flows.fallback import lower_with_fallback, target_sensitivity
from compressor.model import Model
from compressor.reference import reference_for
from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.config.recipe import DataSource, InputSpec
from compressor.sensitivity import candidates, layer_sensitivity
from fragile_models import fragile_se
from targets.base import Device, run_batched
from targets.onnx.scopes import nodes_to_exclude
from targets.validate import compare

INPUTS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]
HERE = Path(__file__).resolve().parent
RECIPE = """\
version: 1
name: fragile
model:
  factory: fragile_models:fragile_se
  inputs: [{{name: pixels, shape: [1, 1, 8, 8]}}]
data:
  calibration: {{source: digits, split: train, limit: 64}}
  evaluation: {{source: digits, split: test, limit: 128}}
steps:
  - quantize:
      variants: [{{mode: static, calibration_samples: 64, fallback: {fallback}}}]
targets: [onnx]
benchmark: {{runs: 5, warmup: 1, warmup_s: 0, memory: false}}
"""


@pytest.fixture(scope="module")
def model():
    return Model(module=fragile_se(), inputs=INPUTS)


@pytest.fixture(scope="module")
def calibration():
    return load_dataset(DataSource(source="digits", split="train", limit=64), INPUTS)


@pytest.fixture(scope="module")
def evaluation():
    return load_dataset(DataSource(source="digits", split="test", limit=128), INPUTS)


@pytest.fixture(scope="module")
def reference(model, evaluation):
    return reference_for(model, evaluation, 128)


@pytest.fixture(scope="module")
def onnx_base(model, tmp_path_factory):
    return targets.get("onnx").export(model, None, tmp_path_factory.mktemp("base") / "m", {}, None)


def _cosine_on_runtime(target: str, path: Path, reference) -> float:
    session = targets.get(target).open_session(path, Device(), 1)
    return compare(reference.outputs, run_batched(session, reference.inputs, 64), ["out"]).cosine


def test_sensitivity_ranks_the_fragile_layer_first(model, calibration, evaluation):
    x = {"pixels": evaluation.inputs["pixels"][:64]}
    scores = layer_sensitivity(model, targets.get("torchscript").quantizer_family, calibration, x,
                               evaluation.labels[:64])
    assert scores[0].name == "head" and scores[0].kind == "Linear"
    assert scores[0].cosine < 0.9 and scores[0].rel_error > 0.1
    assert all(s.cosine > 0.99 for s in scores[1:])
    # Ten layers, and `se:ops`: SqueezeExcite's own `x * gate`, no layer of its own.
    assert {s.name for s in scores} == {"stem", "stem_act", "se.pool", "se.reduce", "se.expand", "se.gate",
                                        "se:ops", "mix", "mix_act", "pool", "head"}
    assert next(s for s in scores if s.name == "se:ops").kind == "SqueezeExcite ops"
    assert all(s.accuracy_drop is not None for s in scores)
    assert candidates(model, "block") == ["stem", "stem_act", "se", "mix", "mix_act", "pool", "head"]


@pytest.mark.parametrize("target", ["onnx", "tflite", "torchscript"])
def test_dynamic_sensitivity_simulates_dynamic_int8(model, calibration, evaluation, target):
    # Dynamic int8 quantizes `head`'s input per batch at run time: the outlier channel
    # still costs it; layers without a matrix weight are never quantized dynamically.
    x = {"pixels": evaluation.inputs["pixels"][:64]}
    scores = layer_sensitivity(model, targets.get(target).quantizer_family, calibration, x, mode="dynamic")
    assert scores[0].name == "head" and scores[0].cosine < 0.9
    by_name = {s.name: s for s in scores}
    assert by_name["se.gate"].cosine == 1.0 and by_name["se:ops"].rel_error == 0.0
    with pytest.raises(RecipeError, match="static and dynamic"):
        layer_sensitivity(model, targets.get(target).quantizer_family, calibration, x, mode="fp16")


def test_onnx_layerwise_sensitivity_on_the_runtime_agrees(model, calibration, onnx_base, reference):
    n = 64
    scores = target_sensitivity(targets.get("onnx"), model, QuantVariant(mode="static", calibration_samples=64),
                                calibration, onnx_base, {"pixels": reference.inputs["pixels"][:n]},
                                [o[:n] for o in reference.outputs], None, candidates(model))
    assert scores[0].name == "head" and scores[0].cosine < 0.9
    assert all(s.cosine > 0.99 for s in scores[1:]) and len(scores) == 11


def test_onnx_exclude_takes_module_names_blocks_and_op_types(model, calibration, onnx_base, reference, tmp_path):
    onnx_t = targets.get("onnx")
    plain = onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64), tmp_path / "plain", {},
                          calibration, base=onnx_base)
    head = onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64, exclude=["head"]),
                         tmp_path / "head", {}, calibration, base=onnx_base)
    assert _cosine_on_runtime("onnx", plain.path, reference) < 0.9
    assert _cosine_on_runtime("onnx", head.path, reference) > 0.99
    # The flatten in front of `head` (top-level code, no module of its own) stays float with it.
    ops = {n.name: n.op_type for n in onnx.load(str(onnx_base.path)).graph.node}
    assert sorted(ops[n] for n in nodes_to_exclude(onnx_base.path, ["head"], [])) == ["Gemm", "Reshape"]
    gemm = next(n for n in onnx.load(str(head.path)).graph.node if n.op_type == "Gemm")
    inits = {i.name: i for i in onnx.load(str(head.path)).graph.initializer}
    assert inits[gemm.input[1]].data_type == onnx.TensorProto.FLOAT  # float weight, no DequantizeLinear
    # mix_act's HardSwish becomes an unnamed HardSigmoid + Mul in ORT's pre-processing;
    # they stay float with it, and the outlier tensor is never quantized.
    three = onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64,
                                              exclude=["head", "mix", "mix_act"]), tmp_path / "three", {},
                          calibration, base=onnx_base)
    assert _cosine_on_runtime("onnx", three.path, reference) > 0.9999
    block = onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64, exclude=["se"],
                                              exclude_ops=["HardSwish"]), tmp_path / "block", {}, calibration,
                          base=onnx_base)
    # se: pool, reduce, relu, expand, gate, mul (6 nodes); HardSwish: stem_act and mix_act.
    assert block.meta["float_nodes"] == 8
    with pytest.raises(RecipeError, match="did you mean 'se.gate'"):
        onnx_t.export(model, QuantVariant(mode="static", exclude=["se.gat"]), tmp_path / "bad", {}, calibration,
                      base=onnx_base)
    with pytest.raises(RecipeError, match="not an ONNX operator type"):
        onnx_t.export(model, QuantVariant(mode="static", exclude_ops=["Hardswish2"]), tmp_path / "bad", {},
                      calibration, base=onnx_base)


def test_tflite_exclude_by_module_name_keeps_that_layer_float(model, calibration, reference, tmp_path):
    # litert-torch's own module-name filter matched nothing with this torch: `head` was
    # quantized anyway. Kept float, the artifact holds cosine 0.99 on ai-edge-litert.
    variant = QuantVariant(mode="static", calibration_samples=32, exclude=["head"])
    art = targets.get("tflite").export(model, variant, tmp_path / "m", {}, calibration, base=None)
    assert _cosine_on_runtime("tflite", art.path, reference) > 0.99


def test_torchscript_fallback_keeps_only_the_fragile_layer_in_float(model, calibration, reference, tmp_path):
    ts = targets.get("torchscript")
    base = ts.export(model, None, tmp_path / "m", {}, None)
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=FallbackSpec(min_cosine=0.99))
    got = lower_with_fallback(ts, model, variant, {}, calibration, base, reference, tmp_path / "m.int8",
                              variant.fallback)
    assert got.refused is None and got.float_layers == ["head"] and got.lowering == "default"
    assert got.attempts[0]["float_layers"] == [] and got.attempts[0]["cosine"] < 0.9 and not got.attempts[0]["ok"]
    assert got.artifact.path == tmp_path / "m.int8.pt"
    assert _cosine_on_runtime("torchscript", got.artifact.path, reference) >= 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.pt", "m.pt"]  # attempts left no files


def test_tflite_fallback_keeps_only_the_fragile_layer_in_float(model, calibration, reference, tmp_path):
    tfl = targets.get("tflite")
    base = tfl.export(model, None, tmp_path / "m", {}, None)
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=FallbackSpec(min_cosine=0.99))
    got = lower_with_fallback(tfl, model, variant, {}, calibration, base, reference, tmp_path / "m.int8",
                              variant.fallback, measure_latency=False)
    assert got.refused is None and got.float_layers == ["head"] and got.lowering == "default"
    assert got.attempts[0]["cosine"] < 0.9 and got.attempts[-1]["cosine"] >= 0.99
    assert _cosine_on_runtime("tflite", got.artifact.path, reference) >= 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.tflite", "m.tflite"]


@pytest.fixture(scope="module")
def fallback_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fallback")
    (d / "r.yaml").write_text(RECIPE.format(fallback="{min_cosine: 0.99}"))
    code = main(["run", str(d / "r.yaml"), "--out", str(d / "run"), "--no-progress"])
    return code, d / "run"


def test_pipeline_fallback_meets_the_budget_on_onnxruntime_and_reports_it(fallback_run, reference):
    code, run = fallback_run
    assert code == 0
    report = json.loads((run / "report.json").read_text())
    row = next(r for r in report["artifacts"] if r["name"] == "onnx/int8-static")
    f = row["fallback"]
    assert row["status"] == "ok" and f["lowering"] == "default"
    assert [x["name"] for x in f["float_layers"]] == ["head"]
    assert f["float_layers"][0]["latency_ms"] is not None
    assert f["attempts"][0]["cosine"] < 0.9 and f["attempts"][-1]["ok"]
    # The published artifact, run again here on onnxruntime: it holds the budget.
    assert _cosine_on_runtime("onnx", run / row["file"], reference) >= 0.99
    assert row["fidelity"]["cosine_mean"] >= 0.99
    bars = next(v for k, v in report["per_layer"].items() if k.startswith("onnx/int8-static sensitivity"))
    assert max(bars, key=bars.get) == "head"
    assert "| onnx/int8-static | cosine >= 0.99 | default | `head`" in (run / "report.md").read_text()
    assert sorted(p.name for p in (run / "artifacts").iterdir()) == ["fragile.fp32.onnx", "fragile.int8-static.onnx"]


def test_an_impossible_budget_is_refused_in_one_line_with_no_artifact(tmp_path, capsys):
    budget = "{min_cosine: 0.99999, max_float_layers: 0, sensitivity: target}"
    (tmp_path / "r.yaml").write_text(RECIPE.format(fallback=budget))
    code = main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1  # the result does not hold: not a mistake in the recipe
    assert "no onnx lowering of int8-static meets the budget" in err and "'head'" in err
    assert "within max_float_layers=0" in err and "precisions that meet it:" in err and "fp32" in err
    assert sorted(p.name for p in (tmp_path / "run" / "artifacts").iterdir()) == ["fragile.fp32.onnx"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    row = next(r for r in report["artifacts"] if r["name"] == "onnx/int8-static")
    tried = {a["lowering"] for a in row["fallback"]["attempts"]}
    assert {"default", "calibration=percentile", "per-tensor", "exclude_ops=[HardSigmoid]"} <= tried


def test_sensitivity_command_prints_a_ranked_table_in_80_columns(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(RECIPE.format(fallback="{min_cosine: 0.99}"))
    assert main(["sensitivity", str(tmp_path / "r.yaml"), "--target", "torchscript", "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:2] == ["1", "head"] and len(lines) == 5
    assert max(len(x) for x in lines) <= 80
    assert main(["sensitivity", str(tmp_path / "r.yaml"), "--target", "onxx"]) == 2


def test_accuracy_budget_without_labels_is_a_recipe_error(model, calibration, onnx_base, reference, tmp_path):
    variant = QuantVariant(mode="static", fallback=FallbackSpec(min_cosine=None, max_accuracy_drop=1.0))
    with pytest.raises(RecipeError, match="needs labelled evaluation data"):
        lower_with_fallback(targets.get("onnx"), model, variant, {}, calibration, onnx_base, reference,
                            tmp_path / "m", variant.fallback)
    with pytest.raises(ValueError, match="min_cosine, min_worst_cosine and/or max_accuracy_drop"):
        FallbackSpec(min_cosine=None)
    with pytest.raises(ValueError, match="not fp16"):
        QuantVariant(mode="fp16", fallback=FallbackSpec())


def test_onnx_exclude_finds_a_convolution_folded_with_its_batchnorm(digits_model, tmp_path):
    # The exporter folds BatchNorm into the convolution before it; the fused Conv carries
    # the BatchNorm's scope ('features.0.1'), yet 'features.0.0' names it.
    base = targets.get("onnx").export(digits_model, None, tmp_path / "d", {}, None)
    got = nodes_to_exclude(base.path, ["features.0.0", "features.3.0"], [])
    ops = {n.name: n.op_type for n in onnx.load(str(base.path)).graph.node}
    assert [ops[n] for n in got] == ["Conv", "Conv"]


def test_a_runtime_that_crashes_costs_the_probe_not_the_run(tmp_path, monkeypatch):
    """Each probe's artifact first runs one sample in a child process: ONNX Runtime
    segfaults creating a session for some lowerings (dynamic int8 of a ViT), which
    in-process would end the whole run instead of being one failed attempt."""
    import numpy as np
    import torch

    from compressor.flows.fallback import probe as fallback

    model = Model(module=torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval(),
                  inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    art = targets.get("onnx").export(model, None, tmp_path / "m", {}, None)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    assert fallback._runtime_crash("onnx", art.path, feeds, tmp_path) is None
    monkeypatch.setattr(fallback, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    msg = fallback._runtime_crash("onnx", art.path, feeds, tmp_path)
    assert msg == "the onnx runtime crashed (SIGSEGV) loading or running this lowering"


def _int8_muls_tflite(path: Path) -> tuple[int, int]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    muls = [[dtypes[i] for i in op["inputs"] if i >= 0] for op in it._get_ops_details() if op["op_name"] == "MUL"]
    return sum(ins == ["int8", "int8"] for ins in muls), sum(ins == ["float32", "float32"] for ins in muls)


def test_an_op_scope_keeps_only_the_modules_own_operations_float_on_every_target(model, calibration, onnx_base,
                                                                               tmp_path):
    # `se:ops` is SqueezeExcite's own `x * gate`: float on all three targets, while its
    # convolutions (children) stay int8.
    import torch

    from targets.torchscript.quantize import static_int8

    plain, ops = (QuantVariant(mode="static", calibration_samples=64, exclude=ex) for ex in ([], ["se:ops"]))
    graph = onnx.load(str(onnx_base.path)).graph
    assert [n.op_type for n in graph.node if n.name in nodes_to_exclude(onnx_base.path, ["se:ops"], [])] == ["Mul"]
    mul = next(n.name for n in graph.node if n.name in nodes_to_exclude(onnx_base.path, ["se:ops"], []))
    for v, quantized in ((plain, True), (ops, False)):
        art = targets.get("onnx").export(model, v, tmp_path / f"o{len(v.exclude)}", {}, calibration, base=onnx_base)
        g = onnx.load(str(art.path)).graph
        made_by = {o: n.op_type for n in g.node for o in n.output}
        ins = next(n.input for n in g.node if n.name == mul)  # int8 in QDQ: every input dequantized
        assert all(made_by.get(i) == "DequantizeLinear" for i in ins) is quantized
        assert sum(n.op_type == "ConvInteger" or n.op_type == "Conv" for n in g.node) >= 3
    for v, want in ((plain, "quantized.mul"), (ops, "<built-in function mul>")):
        q, _ = static_int8(model.module, ["pixels"], model.example_inputs(batch=2), v, calibration)
        assert [str(n.target) for n in q.graph.nodes if "mul" in str(n.target)] == [want]
        assert isinstance(q.get_submodule("se.expand"), torch.ao.nn.quantized.Conv2d)
    int8_plain, _ = _int8_muls_tflite(targets.get("tflite").export(model, plain, tmp_path / "t0", {}, calibration,
                                                                   base=None).path)
    int8_ops, float_ops = _int8_muls_tflite(targets.get("tflite").export(model, ops, tmp_path / "t1", {},
                                                                         calibration, base=None).path)
    assert (int8_plain, int8_ops) == (1, 0) and float_ops >= 1
    with pytest.raises(RecipeError, match="did you mean 'se:ops'"):
        targets.get("torchscript").export(model, QuantVariant(mode="static", exclude=["sf:ops"]), tmp_path / "bad",
                                          {}, calibration)


class _Found:
    def __init__(self, layers, ok):
        self.float_layers, self.ok = list(layers), ok


def test_window_search_finds_a_short_run_of_consecutive_layers_by_bisection():
    # Each layer alone is harmless; only c and d together in float meet the budget (int8
    # error that builds up in one region). Two bisections then the pruning pass find them.
    from compressor.quant.search import Lowering, shortest_window as _window

    names = [f"l{i}" for i in range(40)]
    need = {"l21", "l22"}
    calls = []

    def probe(layers, low):
        calls.append(tuple(layers))
        return _Found(layers, need <= set(layers))

    got = _window(probe, Lowering("default"), names, FallbackSpec(min_cosine=0.99))
    assert got.ok and sorted(got.float_layers) == ["l21", "l22"]
    assert len(calls) <= 2 * 6 + 1 + 2 + 1  # two bisections of 40, the all-float check, pruning, final
    assert _window(probe, Lowering("default"), names, FallbackSpec(min_cosine=0.99, max_float_layers=1)) is None
    assert _window(lambda layers, low: _Found(layers, False), Lowering("default"), names,
                   FallbackSpec(min_cosine=0.99)) is None


def test_vit_layers_and_op_scopes_come_in_execution_order_and_all_float_is_float_on_torchscript():
    # The encoder's position-embedding add runs before its layers; with every layer and op
    # scope excluded, FX leaves nothing quantized (dropouts, the identity at inference, no
    # longer carry an int8 input of their own).
    import numpy as np
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    from compressor.data import Dataset
    from targets.torchscript.quantize import static_int8

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                            mlp_dim=64, num_classes=10).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.1)
    model = Model(module=vit, inputs=[InputSpec(name="x", shape=[1, 3, 32, 32])])
    names = candidates(model)
    assert names[:4] == ["conv_proj", ":ops", "encoder:ops", "encoder.layers.encoder_layer_0.ln_1"]
    assert "encoder.layers.encoder_layer_0.self_attention:ops" in names
    rng = np.random.default_rng(0)
    calib = Dataset({"x": rng.standard_normal((8, 3, 32, 32)).astype(np.float32)})
    q, _ = static_int8(vit, ["x"], model.example_inputs(batch=2),
                       QuantVariant(mode="static", calibration_samples=8, exclude=names), calib)
    assert not [n for n in q.graph.nodes if "quantize_per_tensor" in str(n.target)]
    x = torch.from_numpy(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(q(x), vit(x), atol=1e-5)


@pytest.mark.parametrize("target", ["onnx", "tflite", "torchscript"])
def test_the_sensitivity_pass_keeps_no_model_copy_alive(model, calibration, evaluation, target):
    # torch's quantization helpers cache every module they see (lru_cache without a
    # bound): 203 layers of Inception-v3 grew the process to 24 GB before the fix.
    import gc

    import torch

    def graph_modules() -> int:
        gc.collect()
        return sum(isinstance(o, torch.fx.GraphModule) for o in gc.get_objects())

    x = {"pixels": evaluation.inputs["pixels"][:16]}
    layer_sensitivity(model, targets.get(target).quantizer_family, calibration, x)  # imports and first-call caches
    before = graph_modules()
    layer_sensitivity(model, targets.get(target).quantizer_family, calibration, x)
    assert graph_modules() - before <= 1
