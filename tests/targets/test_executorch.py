"""The executorch target: XNNPACK-delegated .pte programs of the digits CNN in fp32 and
PT2E int8, run by ExecuTorch's own runtime, with their stored signature, batch bound,
thread count and float exclusions."""

import numpy as np
import pytest
import torch

import targets
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from compressor.errors import InputShapeError
from compressor.model import Model
from targets.base import Device


def cosine(a, b) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


@pytest.fixture(scope="module")
def et_artifacts(tmp_path_factory, digits_model, calibration_data) -> dict:
    target = targets.get("executorch")
    out = tmp_path_factory.mktemp("executorch")
    return {"fp32": target.export(digits_model, None, out / "digits.fp32", {}, calibration_data),
            "int8": target.export(digits_model, QuantVariant(mode="static"), out / "digits.int8", {},
                                  calibration_data)}


def test_fp32_program_matches_pytorch_with_its_stored_signature(et_artifacts, digits_test, torch_test_logits):
    art = et_artifacts["fp32"]
    session = targets.get("executorch").open_session(art.path, Device("cpu"), 1)
    assert art.path.suffix == ".pte" and art.path.read_bytes()[4:8] == b"ET12"
    assert session.inputs[0].name == "pixels" and session.inputs[0].shape == ("batch", 1, 8, 8)
    assert session.output_names == ["logits"] and session.provider == "XnnpackBackend"
    got = session.run({"pixels": digits_test[0]})[0]
    assert np.abs(got - torch_test_logits).max() < 1e-4
    assert art.meta["max_batch"] == 64 and art.meta["dynamic_batch"] is True


def test_static_int8_keeps_cosine_and_is_smaller(et_artifacts, digits_test, torch_test_logits, top1):
    x, y = digits_test
    got = targets.get("executorch").open_session(et_artifacts["int8"].path, Device("cpu"), 1).run({"pixels": x})[0]
    assert cosine(got, torch_test_logits) >= 0.99
    assert top1(got, y) >= top1(torch_test_logits, y) - 0.01
    assert et_artifacts["int8"].size_bytes < 0.4 * et_artifacts["fp32"].size_bytes
    # every int8 op is inside the delegate: only the flatten's view runs outside
    assert not [op for op in et_artifacts["int8"].meta["undelegated_ops"] if "quant" in op]


def test_batch_axis_is_symbolic_up_to_max_batch_and_chunks_beyond(et_artifacts, digits_test, torch_test_logits):
    session = targets.get("executorch").open_session(et_artifacts["fp32"].path, Device("cpu"), 1)
    x = digits_test[0]
    for n in (1, 8, 64, 150):  # 150 > max_batch 64: three chunks
        got = session.run({"pixels": x[:n]})[0]
        assert got.shape == (n, 10) and np.abs(got - torch_test_logits[:n]).max() < 1e-4


def test_fixed_batch_program_records_its_batch_and_refuses_another(tmp_path, digits_model, digits_test):
    art = targets.get("executorch").export(digits_model, None, tmp_path / "fixed", {"dynamic_batch": False}, None)
    session = targets.get("executorch").open_session(art.path, Device("cpu"), 1)
    assert art.meta["dynamic_batch"] is False and session.inputs[0].shape == (1, 1, 8, 8)
    with pytest.raises(InputShapeError) as info:
        session.run({"pixels": digits_test[0][:4]})
    assert "\n" not in str(info.value) and "[4, 1, 8, 8]" in str(info.value)


def test_thread_count_is_honoured_and_earlier_sessions_still_run(et_artifacts, digits_test, torch_test_logits):
    from executorch.extension.pybindings import portable_lib

    target, x = targets.get("executorch"), digits_test[0][:16]
    one = target.open_session(et_artifacts["fp32"].path, Device("cpu"), 1)
    assert portable_lib._threadpool_get_thread_count() == 1
    two = target.open_session(et_artifacts["fp32"].path, Device("cpu"), 2)
    assert portable_lib._threadpool_get_thread_count() == 2
    assert np.abs(one.run({"pixels": x})[0] - torch_test_logits[:16]).max() < 1e-4  # reloaded after the reset
    assert portable_lib._threadpool_get_thread_count() == 1
    assert np.abs(two.run({"pixels": x})[0] - torch_test_logits[:16]).max() < 1e-4


def test_exclude_keeps_a_named_layer_float(digits_model, calibration_data):
    """The excluded convolution keeps its float weight: one per-channel weight quantizer fewer."""
    target = targets.get("executorch")
    opts = target.options({})

    def weight_quantizers(variant) -> int:
        converted, _, _ = target._converted(digits_model, variant, opts, calibration_data)
        return sum(1 for n in converted.graph.nodes if "dequantize_per_channel" in str(n.target))

    full = weight_quantizers(QuantVariant(mode="static"))
    kept = weight_quantizers(QuantVariant(mode="static", exclude=["features.0.0"]))
    assert full == 5 and kept == 4


def test_dynamic_int8_runs_linear_layers_quantized(tmp_path, digits_test):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10)).eval()
    model = Model(module=mlp, inputs=[InputSpec(name="pixels", shape=[1, 1, 8, 8])])
    target = targets.get("executorch")
    fp32 = target.export(model, None, tmp_path / "mlp.fp32", {}, None)
    art = target.export(model, QuantVariant(mode="dynamic"), tmp_path / "mlp.dyn", {}, None)
    x = digits_test[0][:32]
    got = target.open_session(art.path, Device("cpu"), 1).run({"pixels": x})[0]
    assert cosine(got, model.run({"pixels": x})[0]) >= 0.99
    assert art.size_bytes < 0.5 * fp32.size_bytes and "calibration" not in art.meta


def test_screen_is_the_converted_graph_the_program_runs(et_artifacts, digits_model, calibration_data, digits_test):
    x = digits_test[0][:32]
    screened = targets.get("executorch").screen(digits_model, QuantVariant(mode="static"), calibration_data,
                                                {"pixels": x})[0]
    got = targets.get("executorch").open_session(et_artifacts["int8"].path, Device("cpu"), 1).run({"pixels": x})[0]
    assert cosine(screened, got) >= 0.999


@pytest.mark.slow  # ~30 s: two exports, validation and a benchmark of each
def test_run_flow_exports_validates_and_measures_executorch(tmp_path):
    import json

    from compressor.config.recipe import load_recipe
    from compressor.flows.run import run
    from recipes import digits_head

    recipe = digits_head("et", calibration=64, evaluation=100) + (
        "steps:\n  - quantize:\n      variants: [{mode: static}]\n"
        "targets: {executorch: {}}\n"
        "benchmark: {batch_sizes: [1, 4], runs: 5, warmup: 1, warmup_s: 0, memory: false}\n")
    (tmp_path / "et.yaml").write_text(recipe)
    run(load_recipe(tmp_path / "et.yaml", targets.option_models()), tmp_path / "run", show_progress=False)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    rows = {r["label"]: r for r in report["artifacts"] if r["target"] == "executorch"}
    assert set(rows) == {"fp32", "int8-static"}
    assert rows["fp32"]["fidelity"]["max_abs"] < 1e-4
    assert rows["int8-static"]["fidelity"]["cosine_mean"] >= 0.99
    assert rows["int8-static"]["metrics"]["size_bytes"] < rows["fp32"]["metrics"]["size_bytes"]
    assert all(r["metrics"]["latency"] for r in rows.values())


@pytest.mark.slow  # ~70 s: ShuffleNet's int8 lowering, done twice
def test_a_batch_xnnpack_baked_in_is_exported_fixed_instead_of_failing_at_run_time(tmp_path):
    # torch.export keeps ShuffleNet's int8 batch symbolic, but XNNPACK lowers its channel
    # shuffle's reshape with the example's batch of 2 as a constant: such a .pte ran at
    # batch 2 only ("inputs do not fit the program" in the int8 sweep).
    import torchvision

    from compressor.data import Dataset
    from targets.base import run_batched

    torch.manual_seed(0)
    net = torchvision.models.shufflenet_v2_x0_5().eval()
    model = Model(module=net, inputs=[InputSpec(name="x", shape=[1, 3, 32, 32])], output_names=["y"])
    x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    et = targets.get("executorch")
    art = et.export(model, QuantVariant(mode="static", calibration_samples=16), tmp_path / "shuffle", {},
                    Dataset({"x": x}, None))
    assert art.meta["dynamic_batch"] is False and "XNNPACK lowered a reshape" in art.meta["batch_note"]
    session = et.open_session(art.path, Device("cpu"), 1)
    assert session.inputs[0].shape == (1, 3, 32, 32)
    got = run_batched(session, {"x": x}, 8)[0]                 # fed one sample at a time
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == (16, 1000) and cosine(got, want) > 0.9
