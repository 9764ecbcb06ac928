"""The prune step on the real digits CNN and data: accuracy bounds after fine-tuning,
exact 2:4 patterns, permanent masks, channel rounding, and graph consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressor.data import load_dataset
from compressor.errors import RecipeError, UnsupportedOpError
from compressor.model import Model
from compressor.prune import PruneStep, prune
from compressor.prune.masks import check_nm, cubic_sparsity
from compressor.config.recipe import DataSource
from tests.conftest import DIGITS_INPUTS


@pytest.fixture(scope="module")
def train():
    return load_dataset(DataSource(source="digits", split="train"), DIGITS_INPUTS)


@pytest.fixture(scope="module")
def test_set():
    return load_dataset(DataSource(source="digits", split="test"), DIGITS_INPUTS)


def step(**kw) -> PruneStep:
    return PruneStep.model_validate(kw)


def no_hooks_left(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return all(not m._forward_pre_hooks and not m._forward_hooks and not parametrize.is_parametrized(m)
               for m in module.modules())


def test_structured_to_half_the_macs_with_finetuning_loses_at_most_one_point(digits_model, train, test_set):
    pruned, res = prune(digits_model, step(structured={"target": {"macs_ratio": 0.5}, "round_to": 8},
                                           finetune={"epochs": 8, "lr": 0.002}), train=train, evaluation=test_set)
    assert res.macs_after <= 0.5 * res.macs_before
    assert res.accuracy_before >= 0.99
    assert res.accuracy_after >= res.accuracy_before - 0.01, res.finetune.to_json()
    assert res.finetune.wall_s < 30  # seconds, not minutes
    convs = [m for m in pruned.module.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert res.params_after < res.params_before
    # the original model is untouched
    assert [m.out_channels for m in digits_model.module.modules() if isinstance(m, nn.Conv2d)] == [32, 32, 64, 64]


def test_unstructured_80_percent_with_finetuning_loses_at_most_one_point(digits_model, train, test_set):
    pruned, res = prune(digits_model, step(unstructured={"sparsity": 0.8}, finetune={"epochs": 8}),
                        train=train, evaluation=test_set)
    assert res.sparsity == pytest.approx(0.8, abs=0.002)
    assert res.accuracy_after >= res.accuracy_before - 0.01
    assert res.macs_after == res.macs_before  # same dense graph: the report must not imply a speedup
    assert any("do not get faster" in n for n in res.notes)
    # Masks are permanent: zeros in the weights themselves, nothing attached to the modules.
    assert no_hooks_left(pruned.module)
    w = dict(pruned.module.named_modules())["features.1.0"].weight
    assert float((w == 0).float().mean()) > 0.5
    assert "classifier" not in res.layer_sparsity  # the output layer is never pruned


def test_gradual_schedule_reaches_its_sparsity_and_keeps_it(digits_model, train, test_set):
    assert cubic_sparsity(0.8, 0, 100) == 0 and cubic_sparsity(0.8, 100, 100) == pytest.approx(0.8)
    assert cubic_sparsity(0.8, 50, 100) == pytest.approx(0.7)  # fast early, slow late
    pruned, res = prune(digits_model, step(unstructured={"sparsity": 0.6, "schedule": "gradual", "scope": "layer"},
                                           finetune={"epochs": 3, "early_stopping": {"patience": 5}}),
                        train=train, evaluation=test_set)
    assert all(v == pytest.approx(0.6, abs=0.01) for v in res.layer_sparsity.values()), res.layer_sparsity
    assert res.accuracy_after >= 0.97


def test_two_four_pattern_holds_exactly_in_every_pruned_layer(digits_model, train, test_set):
    pruned, res = prune(digits_model, step(nm={"n": 2, "m": 4}, finetune={"epochs": 2}), train=train,
                        evaluation=test_set)
    # The first conv has one input channel: it does not admit 2:4, and says why.
    assert set(res.skipped) == {"features.0.0"} and "multiple of 4" in res.skipped["features.0.0"]
    mods = dict(pruned.module.named_modules())
    for name in set(res.layer_sparsity) - set(res.skipped):
        w = mods[name].weight
        assert check_nm(w, 2, 4), name
        assert res.layer_sparsity[name] >= 0.5
    assert res.accuracy_after >= res.accuracy_before - 0.01
    assert no_hooks_left(pruned.module)


@pytest.mark.parametrize("importance", ["l2", "bn_scale", "taylor"])
def test_importance_criteria_prune_uniformly_to_the_rounding(digits_model, train, importance):
    pruned, res = prune(digits_model, step(structured={"ratio": 0.5, "importance": importance, "round_to": 8}),
                        train=train)
    assert [m.out_channels for m in pruned.module.modules() if isinstance(m, nn.Conv2d)] == [16, 16, 32, 32]
    assert res.layer_ratios["features.0.0"] == 0.5 and res.layer_ratios["classifier"] == 0.0


def test_per_layer_ratios_and_ignored_layers(digits_model):
    pruned, res = prune(digits_model, step(structured={"ratio": 0.25, "layers": {"features.4.0": 0.5}},
                                           ignore=["features.0.0"]))
    assert [m.out_channels for m in pruned.module.modules() if isinstance(m, nn.Conv2d)] == [32, 24, 48, 32]


class Branchy(nn.Module):
    """A residual add, a concatenation and a depthwise conv: what must be pruned together."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32),
                                nn.ReLU(), nn.Conv2d(32, 48, 1))
        self.left = nn.Conv2d(48, 32, 1)
        self.right = nn.Conv2d(48, 16, 3, padding=1)
        self.head = nn.Linear(48, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.res(x))
        x = self.dw(x)
        x = torch.cat([self.left(x), self.right(x)], 1)
        return self.head(x.mean((2, 3)))


def test_residual_concat_and_depthwise_stay_consistent_and_export(tmp_path):
    import targets
    from compressor.config.recipe import InputSpec
    from targets.base import Device

    torch.manual_seed(0)
    model = Model(module=Branchy().eval(), inputs=[InputSpec(name="x", shape=[1, 3, 16, 16])])
    pruned, res = prune(model, step(structured={"ratio": 0.5, "round_to": 8}))
    m = pruned.module
    assert m.stem[0].out_channels == m.res[0].out_channels == m.dw[0].out_channels == m.dw[0].groups == 16
    assert m.head.in_features == m.left.out_channels + m.right.out_channels == 24
    assert all(c.out_channels % 8 == 0 for c in m.modules() if isinstance(c, nn.Conv2d))
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    expect = pruned.run({"x": x})[0]
    assert expect.shape == (2, 5)
    art = targets.get("onnx").export(pruned, None, tmp_path / "branchy", {}, None)
    got = targets.get("onnx").open_session(art.path, Device(), 2).run({"x": x})[0]
    np.testing.assert_allclose(got, expect, atol=1e-4)


def test_latency_search_uses_runtime_layer_timings(digits_model):
    from benchmarks.layer_latency import OrtLayerTimer

    timer = OrtLayerTimer(threads=1, min_runs=5, min_time_s=0.0)
    pruned, res = prune(digits_model, step(structured={"target": {"macs_ratio": 0.6}, "round_to": 8}),
                        layer_ms=timer)
    assert res.macs_after <= 0.6 * res.macs_before
    assert len(timer.cache) >= 4 and res.search["dense_latency_ms"] > 0
    assert {g["root"] for g in res.search["groups"]} == {"features.0.0", "features.1.0", "features.3.0",
                                                         "features.4.0"}


def test_ratio_outside_zero_one_is_a_recipe_error():
    with pytest.raises(Exception, match="less than 1"):
        step(structured={"ratio": 1.0})
    with pytest.raises(Exception, match="greater than or equal to 0"):
        step(unstructured={"sparsity": -0.1})


def test_unknown_layer_name_lists_close_matches(digits_model):
    with pytest.raises(RecipeError, match=r"'feature\.4\.0'.*did you mean 'features\.4\.0'"):
        prune(digits_model, step(structured={"ratio": 0.3}, ignore=["feature.4.0"]))


class Numpyish(nn.Module):
    def forward(self, x):
        return torch.from_numpy(np.tanh(x.detach().numpy()))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.squash = Numpyish()
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.conv2(self.squash(self.conv(x))).mean((2, 3)))


def test_untraceable_graph_names_the_module():
    from compressor.config.recipe import InputSpec

    model = Model(module=Untraceable().eval(), inputs=[InputSpec(name="x", shape=[1, 1, 8, 8])])
    with pytest.raises(UnsupportedOpError, match=r"module 'squash' \(Numpyish\)"):
        prune(model, step(structured={"ratio": 0.5}))
