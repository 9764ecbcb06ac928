"""The fallback that finishes: budgets on the worst sample, a time budget that ends the
search with what it found (or a refusal saying what to raise), the ranking blocks first,
calibration shared by the probes, the invariant that an int8 variant with every layer
and op scope kept float computes what the float model does (every target, several
module styles), and no analysis pass leaving state in the user's module (LeViT's
attention-bias cache)."""

from pathlib import Path

import numpy as np
import pytest
import torch

import targets
from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.config.recipe import DataSource, InputSpec
from compressor.data import Dataset, load_dataset
from compressor.flows.fallback import lower_with_fallback
from compressor.model import Model
from compressor.quant.ranking import Unit, rank, split_units
from compressor.quant.search import BudgetSpent, Lowering, meets, search
from compressor.reference import reference_for
from compressor.sensitivity import candidates
from fragile_models import fragile_se
from style_models import style_model
from targets.validate import validate_artifact

INPUTS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]


@pytest.fixture(scope="module")
def fragile():
    model = Model(module=fragile_se(), inputs=INPUTS)
    calibration = load_dataset(DataSource(source="digits", split="train", limit=64), INPUTS)
    evaluation = load_dataset(DataSource(source="digits", split="test", limit=128), INPUTS)
    return model, calibration, reference_for(model, evaluation, 128)


@pytest.fixture(scope="module")
def fragile_onnx(fragile, tmp_path_factory):
    return targets.get("onnx").export(fragile[0], None, tmp_path_factory.mktemp("base") / "m", {}, None)


# --- the search, over a probe -------------------------------------------------------


class _Result:
    def __init__(self, layers, ok, cosine):
        self.float_layers, self.ok, self.cosine, self.crashed, self.screened = list(layers), ok, cosine, None, False


def test_the_time_budget_ends_the_search_with_the_smallest_set_it_met():
    # Meeting the budget takes the 5 leading layers; the budget runs out after 6 exports:
    # the doubling has met it with 8, the bisection with 6, and the search says where it stopped.
    names = [f"l{i}" for i in range(40)]
    calls = []

    def probe(layers, low):
        if len(calls) == 6:
            raise BudgetSpent()
        calls.append(len(layers))
        return _Result(layers, len(layers) >= 5, 0.98 + len(layers) / 1000)

    end = search(probe, [Lowering("default")], names, names, FallbackSpec(min_cosine=0.99), guess=1)
    assert calls == [1, 2, 4, 8, 6, 5]
    assert end.result is not None and len(end.result.float_layers) == 5
    assert end.stopped == "time budget spent during the float-layer search (default)"
    # Nothing met before the time ran out: no result, and still where it stopped.
    calls.clear()

    def never(layers, low):
        if len(calls) == 3:
            raise BudgetSpent()
        calls.append(len(layers))
        return _Result(layers, False, 0.98)

    end = search(never, [Lowering("default")], names, names, FallbackSpec(min_cosine=0.99))
    assert end.result is None and end.stopped.startswith("time budget spent") and calls == [1, 2, 4]


def test_a_first_guess_from_the_scores_saves_the_doubling():
    names = [f"l{i}" for i in range(64)]
    calls = []

    def probe(layers, low):
        calls.append(len(layers))
        return _Result(layers, len(layers) >= 20, 0.99)

    end = search(probe, [Lowering("default")], names, names, FallbackSpec(min_cosine=0.99), guess=24)
    assert len(end.result.float_layers) == 20 and calls[:6] == [24, 12, 18, 21, 19, 20]


def test_the_worst_sample_has_a_budget_of_its_own():
    budget = FallbackSpec(min_cosine=0.99, min_worst_cosine=0.98)
    assert meets(budget, 0.995, None, None, worst=0.985) == (True, None)
    ok, why = meets(budget, 0.995, None, None, worst=0.95)
    assert not ok and why == "worst-sample cosine 0.95000 < 0.98"
    assert meets(FallbackSpec(min_cosine=None, min_worst_cosine=0.9), 0.5, None, None, worst=0.95)[0]
    # A screen whose errors the artifact doubles: 0.994 on the screen is 0.988 on the artifact.
    ok, why = meets(budget, 0.994, None, None, worst=0.995, optimism=(2.0, 1.0))
    assert not ok and why == "cosine 0.98800 (as the artifact would give it) < 0.99"
    assert meets(budget, 0.996, None, None, worst=0.985, optimism=(2.0, 1.0))[0]
    assert not meets(budget, 0.996, None, None, worst=0.985, optimism=(1.0, 1.5))[0]


# --- the ranking, blocks first ------------------------------------------------------


def _model_names(stages=6, blocks=3, layers=6):
    names = ["stem"]
    for s in range(stages):
        for b in range(blocks):
            names += [f"stages.{s}.{b}.conv{i}" for i in range(layers)] + [f"stages.{s}.{b}:ops"]
    return names + ["head"]


def test_units_follow_the_module_paths_in_model_order():
    names = _model_names()
    units = split_units(names, want=8)
    assert [u.name for u in units] == ["stem"] + [f"stages.{s}" for s in range(6)] + ["head"]
    assert sum(len(u.members) for u in units) == len(names) and units[0] == Unit("stem", ["stem"])
    assert [u.name for u in split_units(units[3].members, 3, "stages.2")] == [f"stages.2.{b}" for b in range(3)]


def test_the_ranking_scores_blocks_then_only_the_layers_of_the_sensitive_ones():
    # Each layer alone costs 1e-5, three layers of stage 4 cost 1e-3; a unit's damage
    # with only it quantized is the sum over its members.
    names = _model_names()
    hot = {"stages.4.1.conv2", "stages.4.1.conv5", "stages.4.2.conv0"}
    scored = []

    def score(units):
        scored.extend(u.name for u in units)
        return {u.name: sum(1e-3 if m in hot else 1e-5 for m in u.members) for u in units}

    got = rank(names, score, share=0.3)
    assert set(got.order[:3]) == hot and len(got.order) == len(names)
    assert got.scored == len(scored) < len(names) / 3       # 132 layers, a few dozen scores
    assert "stages.4" in got.damage and "stages.4.1.conv2" in got.damage
    # No single layer of a harmless stage is scored (its blocks are, on the first level).
    assert not any(n.startswith("stages.0.") and (n.count(".") == 3 or n.endswith(":ops")) for n in scored)


# --- on the runtimes ----------------------------------------------------------------


def test_a_worst_sample_budget_is_met_on_onnxruntime_and_refusals_name_it(fragile, fragile_onnx, tmp_path):
    model, calibration, reference = fragile
    onnx_t = targets.get("onnx")
    said = []
    budget = FallbackSpec(min_cosine=None, min_worst_cosine=0.97)
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=budget)
    got = lower_with_fallback(onnx_t, model, variant, {}, calibration, fragile_onnx, reference, tmp_path / "w",
                              budget, progress=said.append, measure_latency=False)
    assert got.refused is None and got.float_layers == ["head"]
    assert got.fidelity["cosine_min"] >= 0.97 and got.attempts[0]["cosine_min"] < 0.97
    fid, _ = validate_artifact(onnx_t, got.artifact, reference.inputs, reference.outputs)
    assert fid.cosine_min >= 0.97                                # the published file, run again
    # Progress says which step, how far, and the time against the budget.
    assert any(m.startswith("int8-static: probe 1 (default, 0 float): cosine") and m.endswith("/180 s]")
               for m in said)
    assert any("sensitivity" in m and "blocks first" in m for m in said)
    strict = FallbackSpec(min_cosine=None, min_worst_cosine=0.99999, max_float_layers=0, alternatives=False)
    refused = lower_with_fallback(onnx_t, model, variant.model_copy(update={"fallback": strict}), {}, calibration,
                                  fragile_onnx, reference, tmp_path / "s", strict, measure_latency=False)
    assert "worst-sample cosine >= 0.99999" in refused.refused and "worst sample 0." in refused.refused


def test_a_spent_time_budget_refuses_saying_what_it_reached_and_what_to_raise(fragile, fragile_onnx, tmp_path):
    model, calibration, reference = fragile
    budget = FallbackSpec(min_cosine=0.99, max_seconds=0.01)  # the default lowering alone takes longer
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=budget)
    got = lower_with_fallback(targets.get("onnx"), model, variant, {}, calibration, fragile_onnx, reference,
                              tmp_path / "m", budget, measure_latency=False)
    assert got.artifact is None and len(got.attempts) == 1      # the default lowering, then no time
    msg = got.refused
    assert "best: cosine 0." in msg and "time budget spent" in msg and "after 1 probes" in msg
    assert "raise fallback.max_seconds (now 0.01) or loosen the budget" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing published, no scratch left


def test_a_budget_spent_by_the_first_probe_refuses_on_a_target_with_a_screen(fragile, tmp_path):
    # The sweep's vit on executorch: the default lowering took the whole budget, and the
    # screen run right after it raised instead of the refusal saying what to raise.
    model, calibration, reference = fragile
    ts = targets.get("torchscript")
    base = ts.export(model, None, tmp_path / "base", {}, calibration)
    budget = FallbackSpec(min_cosine=0.99999999, max_seconds=0.01)
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=budget)
    got = lower_with_fallback(ts, model, variant, {}, calibration, base, reference, tmp_path / "m", budget,
                              measure_latency=False)
    assert got.artifact is None and len(got.attempts) == 1
    assert "time budget spent" in got.refused and "raise fallback.max_seconds (now 0.01)" in got.refused


def test_onnx_probes_share_one_calibration_and_lower_as_a_fresh_export_does(fragile, fragile_onnx, tmp_path):
    from targets.onnx import reuse

    model, calibration, reference = fragile
    onnx_t = targets.get("onnx")
    sets = [[], ["head"], ["head", "mix"], ["se"]]
    fresh = [onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64, exclude=s),
                           tmp_path / f"f{i}", {}, calibration, base=fragile_onnx) for i, s in enumerate(sets)]
    with onnx_t.probe_cache():
        shared = [onnx_t.export(model, QuantVariant(mode="static", calibration_samples=64, exclude=s),
                                tmp_path / f"s{i}", {}, calibration, base=fragile_onnx) for i, s in enumerate(sets)]
        scope = reuse._SCOPE.get()
        assert len(scope["pre"]) == 1 and len(scope["ranges"]) == 1
    for a, b in zip(fresh, shared):
        x = validate_artifact(onnx_t, a, reference.inputs, reference.outputs)[0]
        y = validate_artifact(onnx_t, b, reference.inputs, reference.outputs)[0]
        assert x.cosine == y.cosine and x.max_abs == y.max_abs


# --- the invariant: all float is float ----------------------------------------------

RNG = np.random.default_rng(0)
# Ranges calibrated on inputs 50x smaller than the validation inputs: any activation
# left int8 saturates, so a quantized leftover shows as a large error.
STYLE_CALIB = Dataset({"x": RNG.uniform(-0.02, 0.02, (16, 3, 16, 16)).astype(np.float32)})
STYLE_VAL = {"x": RNG.uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32)}


@pytest.mark.parametrize("target", ["onnx", "torchscript", "pt2", "tflite"])
def test_every_layer_and_op_scope_kept_float_gives_the_float_model_on_every_target(target, tmp_path):
    # One network with every style: Conv-BN-ReLU6, timm's BatchNormAct2d, a residual add with
    # a BatchNorm identity branch, squeeze-excitation, LayerNorm/attention.
    model = Model(module=style_model("all"), inputs=[InputSpec(name="x", shape=[1, 3, 16, 16])])
    t = targets.get(target)
    ref = model.run(STYLE_VAL)
    base = t.export(model, None, tmp_path / "fp32", {}, None) if target in ("onnx", "tflite") else None
    names = [n for n in candidates(model) if base is None or t.keeps_float(base, n)]
    plain = t.export(model, QuantVariant(mode="static", calibration_samples=16), tmp_path / "plain", {},
                     STYLE_CALIB, base=base)
    kept = t.export(model, QuantVariant(mode="static", calibration_samples=16, exclude=names), tmp_path / "kept", {},
                    STYLE_CALIB, base=base)
    assert validate_artifact(t, plain, STYLE_VAL, ref)[0].cosine_min < 0.999  # int8 here does lose accuracy
    fid = validate_artifact(t, kept, STYLE_VAL, ref)[0]
    assert fid.cosine_min >= 0.9999, f"{target}: all float gave worst-sample cosine {fid.cosine_min:.6f}"


@pytest.mark.parametrize("style", ["conv_bn_relu", "timm_bn_act", "residual"])
def test_all_float_is_float_on_torchscript_for_each_style(style):
    # The styles that broke it: a ReLU6 after a float convolution, the activation (and `drop`
    # Identity) inside BatchNormAct2d, a flatten after float pooling, a BatchNorm identity branch.
    from targets.torchscript.quantize import static_int8

    module = style_model(style)
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 16, 16])])
    q, _ = static_int8(module, ["x"], model.example_inputs(batch=2),
                       QuantVariant(mode="static", calibration_samples=16, exclude=candidates(model)), STYLE_CALIB)
    assert not [n for n in q.graph.nodes if "quantize_per_tensor" in str(n.target)]
    x = torch.from_numpy(STYLE_VAL["x"])
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(q(x), module(x)).min() >= 0.99999


def test_all_float_is_float_for_timm_mobilenetv2_on_torchscript():
    # The case: 64 layers kept float still gave 0.9852 (BatchNormAct2d's ReLU6 and
    # its Identity were quantized).
    import timm

    from targets.torchscript.quantize import static_int8

    torch.manual_seed(0)
    module = timm.create_model("mobilenetv2_050", pretrained=False).eval()
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 32, 32])])
    calib = Dataset({"x": RNG.uniform(-0.02, 0.02, (8, 3, 32, 32)).astype(np.float32)})
    q, _ = static_int8(module, ["x"], model.example_inputs(batch=2),
                       QuantVariant(mode="static", calibration_samples=8, exclude=candidates(model)), calib)
    x = torch.from_numpy(RNG.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(q(x), module(x)).min() >= 0.9999


# --- no analysis pass leaves state in the user's module -----------------------------


class CachedBias(torch.nn.Module):
    """Caches a tensor in eval mode the way timm's LeViT caches its attention biases."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, c, 3, padding=1)
        self.act = torch.nn.ReLU6()
        self.biases = torch.nn.Parameter(torch.randn(c, 4) * 0.1)
        self.register_buffer("idxs", torch.tensor([3, 1, 2, 0]), persistent=False)
        self.cache: dict[str, torch.Tensor] = {}
        self.head = torch.nn.Linear(c, 10)

    def get_bias(self, device: torch.device) -> torch.Tensor:
        if torch.jit.is_tracing() or self.training:
            return self.biases[:, self.idxs]
        key = str(device)
        if key not in self.cache:
            self.cache[key] = self.biases[:, self.idxs]
        return self.cache[key]

    def forward(self, x):
        y = self.act(self.conv(x)).flatten(2)
        return self.head((y + self.get_bias(x.device)[:, :1]).mean(2))


def test_a_model_that_caches_a_tensor_in_eval_mode_lowers_to_torchscript_int8(tmp_path):
    # _relu6_after_conv used to trace the very module prepare_fx then traced: the cache kept
    # the first trace's proxy and prepare_fx failed with KeyError: 'getitem_2'.
    torch.manual_seed(0)
    module = CachedBias().eval()
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    calib = Dataset({"x": RNG.uniform(-1, 1, (16, 3, 8, 8)).astype(np.float32)})
    names = candidates(model)
    art = targets.get("torchscript").export(model, QuantVariant(mode="static", calibration_samples=16), tmp_path / "q",
                                            {}, calib)
    assert not module.cache  # neither the ranking's run nor the lowering's traces left anything
    val = {"x": RNG.uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)}
    assert validate_artifact(targets.get("torchscript"), art, val, model.run(val))[0].cosine >= 0.99
    kept = targets.get("torchscript").export(model, QuantVariant(mode="static", calibration_samples=16, exclude=names),
                                             tmp_path / "k", {}, calib)
    assert validate_artifact(targets.get("torchscript"), kept, val, model.run(val))[0].cosine_min >= 0.9999


def test_timm_levit_lowers_to_torchscript_int8():
    import timm

    from targets.torchscript.quantize import static_int8

    torch.manual_seed(0)
    module = timm.create_model("levit_128s", pretrained=False, img_size=64).eval()
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 64, 64])])
    calib = Dataset({"x": RNG.uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)})
    q, _ = static_int8(module, ["x"], model.example_inputs(batch=2), QuantVariant(mode="static", calibration_samples=4),
                       calib)
    x = torch.from_numpy(RNG.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(q(x), module(x)).min() > 0.9
    assert all(not isinstance(v, torch.fx.Proxy) for m in module.modules()
               for v in getattr(m, "attention_bias_cache", {}).values())


def test_the_onnx_exclusion_keeps_the_fallback_output_dir_clean(fragile, fragile_onnx, tmp_path):
    # A found float set is published under the final name; probes and their scratch are gone.
    model, calibration, reference = fragile
    budget = FallbackSpec(min_cosine=0.99)
    variant = QuantVariant(mode="static", calibration_samples=64, fallback=budget)
    got = lower_with_fallback(targets.get("onnx"), model, variant, {}, calibration, fragile_onnx, reference,
                              tmp_path / "m.int8", budget, measure_latency=False)
    assert got.float_layers == ["head"] and sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx"]
    assert Path(got.artifact.path).exists()


def test_the_tflite_screen_reuses_calibration_exactly_within_a_probe_scope():
    # Observer statistics and their scales are kept per observed node: a float set
    # screened in the scope lowers to the same numbers as a fresh lowering.
    from targets.tflite import convert
    from targets.tflite.reuse import run

    model = Model(module=style_model("squeeze_excitation"), inputs=[InputSpec(name="x", shape=[1, 3, 16, 16])])
    calib = Dataset({"x": RNG.uniform(-1, 1, (16, 3, 16, 16)).astype(np.float32)})

    def screen(exclude):
        graph = convert.export_full_integer(model, QuantVariant(mode="static", calibration_samples=16,
                                                                exclude=exclude), None, calib, False, "float", True)
        return run(graph, model, STYLE_VAL)[0]

    fresh = screen(["head"])
    with targets.get("tflite").probe_cache():
        screen([])
        again = screen(["head"])
    np.testing.assert_array_equal(fresh, again)
    assert not np.array_equal(fresh, screen([]))


def test_pt2e_keeps_a_batchnorm_that_shares_its_convolution_s_output_out_of_the_fold():
    # prepare_pt2e folded the identity-branch BatchNorm into the stem convolution that the
    # other branch reads too: 0.90 output cosine in float.
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    from compressor.quant.pt2e_guard import unfold_shared_conv_bn

    module = style_model("residual", outlier=1.0)
    x = torch.from_numpy(STYLE_VAL["x"])
    with torch.no_grad():
        ref = module(x)
        cosines = []
        for guard in (False, True):
            graph = torch.export.export(module, (x,)).module()
            if guard:
                assert unfold_shared_conv_bn(graph) == 1
            _fuse_conv_bn_(graph)
            cosines.append(torch.nn.functional.cosine_similarity(graph(x), ref).min().item())
    assert cosines[0] < 0.99 and cosines[1] > 0.99999


def test_a_torchscript_probe_traces_the_module_its_screen_lowered(fragile, tmp_path):
    # The screen is the FX-converted module run in-process; the probe of the same float set
    # then traces that module rather than lowering the model again, with the same numbers.
    from targets.torchscript import quantize

    model, calibration, reference = fragile
    ts = targets.get("torchscript")
    variant = QuantVariant(mode="static", calibration_samples=64, exclude=["head"])
    fresh = ts.export(model, variant, tmp_path / "fresh", {}, calibration)
    with ts.probe_cache():
        screened = ts.screen(model, variant, calibration, reference.inputs)
        lowered = quantize._PROBE_CACHE.get()["lowered"]
        assert len(lowered) == 1
        kept = next(iter(lowered.values()))[0]
        probed = ts.export(model, variant, tmp_path / "probed", {}, calibration)
        assert next(iter(lowered.values()))[0] is kept and len(lowered) == 1
    a = validate_artifact(ts, fresh, reference.inputs, reference.outputs)[0]
    b = validate_artifact(ts, probed, reference.inputs, reference.outputs)[0]
    assert a.cosine == b.cosine >= 0.99
    # The screen scores what the archive scores, up to the kernels the archive is packed for.
    from targets.validate import compare

    assert abs(compare(reference.outputs, screened, ["out"]).cosine - b.cosine) < 0.005
