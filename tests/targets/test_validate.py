import numpy as np
import pytest

from compressor.errors import FidelityError
from compressor.config.recipe import Tolerance
from targets.validate import check, compare

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(64, 10)).astype(np.float32)
EMBED = RNG.normal(size=(64, 4, 8)).astype(np.float32)
TOL = Tolerance(max_abs=1e-3, min_cosine=0.9999, min_top1=0.99)


def test_identical_outputs_pass_with_perfect_scores():
    fid = compare([LOGITS, EMBED], [LOGITS.copy(), EMBED.copy()], ["logits", "embed"])
    check(fid, TOL, "onnx/fp32")
    assert fid.max_abs == 0 and fid.cosine == pytest.approx(1.0) and fid.top1 == 1.0
    assert fid.outputs[1].top1 is None  # not a (N, classes) output


def test_top1_is_taken_only_of_the_outputs_named_as_classes():
    # A sentence embedding (N, 384) has an argmax too; int8 noise flips it without harm.
    embedding = RNG.uniform(-1, 1, size=(64, 384)).astype(np.float32)  # its largest values close together
    noisy = embedding + RNG.normal(scale=0.05, size=embedding.shape).astype(np.float32)
    judged = compare([embedding], [noisy], ["embedding"])
    assert judged.top1 is not None and judged.top1 < 0.95
    with pytest.raises(FidelityError, match="top-1 agreement"):
        check(judged, Tolerance(min_cosine=0.99, min_top1=0.95), "onnx/int8-dynamic")
    fid = compare([embedding], [noisy], ["embedding"], classes=())
    assert fid.top1 is None and fid.outputs[0].top1_flips is None and fid.cosine > 0.99
    check(fid, Tolerance(min_cosine=0.99, min_top1=0.95), "onnx/int8-dynamic")  # cosine alone decides
    both = compare([LOGITS, embedding], [LOGITS, noisy], ["logits", "embedding"], classes=["logits"])
    assert both.outputs[0].top1 == 1.0 and both.outputs[1].top1 is None


def test_small_noise_is_measured_not_rejected():
    noisy = LOGITS + RNG.normal(scale=1e-5, size=LOGITS.shape).astype(np.float32)
    fid = compare([LOGITS], [noisy], ["logits"])
    assert 0 < fid.max_abs < 1e-4
    check(fid, TOL, "onnx/fp32")


def test_compare_and_check_name_the_worst_output():
    bad_embed = EMBED + RNG.normal(scale=0.5, size=EMBED.shape).astype(np.float32)
    slightly_bad_logits = LOGITS + 0.01
    fid = compare([LOGITS, EMBED], [slightly_bad_logits, bad_embed], ["logits", "embed"])
    assert fid.outputs[1].cosine_mean < fid.outputs[0].cosine_mean
    with pytest.raises(FidelityError, match=r"onnx/int8: output 'embed' differs .*mean cosine"):
        check(fid, TOL, "onnx/int8")


def test_flipped_predictions_break_the_top1_tolerance():
    flipped = LOGITS.copy()
    flipped[:8] = -flipped[:8]
    fid = compare([LOGITS], [flipped], ["logits"])
    assert fid.top1 <= 56 / 64
    with pytest.raises(FidelityError, match="top-1 agreement"):
        check(fid, Tolerance(min_top1=0.95), "x")


def test_non_finite_outputs_are_rejected():
    got = LOGITS.copy()
    got[3, 2] = np.nan
    with pytest.raises(FidelityError, match=r"'logits'.*non-finite"):
        check(compare([LOGITS], [got], ["logits"]), TOL, "x")


def test_shape_and_count_mismatches_are_fidelity_errors():
    with pytest.raises(FidelityError, match=r"shape \[64, 9\] differs from the reference's \[64, 10\]"):
        compare([LOGITS], [LOGITS[:, :9]], ["logits"])
    with pytest.raises(FidelityError, match="gives 2 outputs, the reference 1"):
        compare([LOGITS], [LOGITS, LOGITS], ["logits"])


def test_zero_rows_agree_only_with_zero_rows():
    ref = np.zeros((2, 4), np.float32)
    assert compare([ref], [ref.copy()], ["o"]).cosine == 1.0
    assert compare([ref], [np.ones((2, 4), np.float32)], ["o"]).cosine == 0.0


def test_all_zero_outputs_never_pass_whatever_the_tolerance():
    # Small logits: an all-zero artifact is within max_abs of them, and no cosine bound is set.
    small = LOGITS * 1e-4
    fid = compare([small], [np.zeros_like(small)], ["logits"])
    assert fid.outputs[0].all_zero and fid.cosine == 0.0
    with pytest.raises(FidelityError, match=r"'logits'.*every value is zero"):
        check(fid, Tolerance(max_abs=1e-2), "tflite/int8")
    with pytest.raises(FidelityError, match="non-finite"):
        check(compare([small], [np.full_like(small, np.nan)], ["logits"]), Tolerance(), "x")
    # A reference that is itself zero is matched by zeros.
    zeros = np.zeros_like(small)
    check(compare([zeros], [zeros.copy()], ["logits"]), Tolerance(max_abs=1e-2), "x")
