"""The arithmetic of outlier-aware int8 (compressor.quant.outliers) on activations with
the shapes trained transformers have: a few channels far wider than the rest, and
inputs whose range moves from one to the next."""

import numpy as np
import pytest

from compressor.quant.outliers import (Activations, fake_quant_activations, outlier_channels, output_error,
                                       plan_group, smoothing_scales)


def _acts(x: np.ndarray) -> Activations:
    """x: [inputs, tokens, channels]."""
    return Activations.collect(list(x), rows_per_input=x.shape[1])


def _channels_with_outliers(seed=0, inputs=16, tokens=32, c=64, planted=(3, 41), size=40.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(inputs, tokens, c)).astype(np.float32)
    x[:, :, list(planted)] *= size
    w = rng.normal(size=(c, 48)).astype(np.float32) / np.sqrt(c)
    return x, w


def test_outlier_channels_are_the_planted_ones_largest_first():
    x, _ = _channels_with_outliers(planted=(3, 41))
    x[:, :, 41] *= 2
    got = outlier_channels(np.abs(x.reshape(-1, 64)).max(0), max_share=0.05)
    assert got.tolist() == [41, 3]


def test_outlier_channels_gives_none_when_too_many_would_be_needed():
    x, _ = _channels_with_outliers(planted=tuple(range(10)))
    assert len(outlier_channels(np.abs(x.reshape(-1, 64)).max(0), max_share=0.05)) == 0


def test_smoothing_scales_follow_smoothquant_and_stay_finite():
    s = smoothing_scales(np.array([4.0, 1.0, 0.0]), np.array([1.0, 4.0, 1.0]), 0.5)
    np.testing.assert_allclose(s[:2], [2.0, 0.5], rtol=1e-6)
    assert np.isfinite(s).all() and (s > 0).all()


def test_fake_quant_activations_holds_zero_and_256_levels():
    x = np.linspace(-1, 3, 1000, dtype=np.float32)
    q = fake_quant_activations(x, -1, 3)
    assert len(np.unique(q)) <= 256 and np.abs(q - x).max() <= 4 / 255 / 2 + 1e-6
    assert fake_quant_activations(np.zeros(3, np.float32), 0.5, 2.0).tolist() == [0, 0, 0]


def test_float_outlier_channels_cut_the_error_of_a_layer_with_planted_outliers():
    x, w = _channels_with_outliers()
    acts = _acts(x)
    plain = output_error(acts, [w])
    split = output_error(acts, [w], float_channels=np.array([3, 41]))
    assert split < plain / 20, (plain, split)
    plan = plan_group(acts, [w], dynamic_mode=False)
    assert sorted(plan.float_channels.tolist()) == [3, 41]
    assert plan.error_after < plan.error_before / 20 and not plan.dynamic


def test_smoothing_is_chosen_for_channels_that_are_wide_but_not_outliers():
    rng = np.random.default_rng(1)
    # Channel ranges spread over 0.5..5 (a LayerNorm with uneven gammas): no outlier, but
    # one per-tensor range wastes levels on the narrow channels.
    x = (rng.normal(size=(16, 32, 64)) * np.geomspace(0.5, 5, 64)).astype(np.float32)
    w = rng.normal(size=(64, 48)).astype(np.float32) / 8
    plan = plan_group(_acts(x), [w], dynamic_mode=False)
    assert len(plan.float_channels) == 0
    assert plan.scales is not None and 0.5 <= plan.alpha <= 0.9
    assert plan.error_after < 0.7 * plan.error_before


def test_inputs_whose_range_moves_get_per_inference_ranges():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 32, 64)).astype(np.float32)
    x *= np.geomspace(1, 30, 16)[:, None, None]   # each input a different loudness
    w = rng.normal(size=(64, 48)).astype(np.float32) / 8
    plan = plan_group(_acts(x), [w], dynamic_mode=False)
    assert plan.dynamic
    steady = rng.normal(size=(16, 32, 64)).astype(np.float32)
    assert not plan_group(_acts(steady), [w], dynamic_mode=False).dynamic


def test_a_fixed_alpha_is_used_as_given():
    x, w = _channels_with_outliers()
    x[:, :, [3, 41]] /= 40
    x *= np.geomspace(0.5, 5, 64)
    plan = plan_group(_acts(x), [w], dynamic_mode=True, alpha=0.3)
    assert plan.alpha == 0.3 and plan.dynamic


def test_collect_needs_inputs():
    with pytest.raises(ValueError, match="no calibration inputs"):
        Activations.collect([], rows_per_input=4)
