"""The pretrained sentence encoder the transformer int8 claims rest on, and the real
English text it is calibrated and validated on."""

import numpy as np
import pytest
import torch

from compressor.zoo.english import sentences
from compressor.zoo.minilm import minilm, sentence_tokens, tokenize


def test_calibration_and_validation_sentences_are_real_and_apart():
    train, test = sentences("train"), sentences("test")
    assert len(train) >= 512 and len(test) >= 256
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(sentences("all"))
    assert all(s[0].isupper() and s[-1] in ".!?" and 6 <= len(s.split()) <= 60 for s in test)
    with pytest.raises(ValueError, match="split"):
        sentences("validation")


@pytest.fixture(scope="module")
def encoder():
    return minilm()


def _embed(model, texts):
    feeds = tokenize(texts)
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))).numpy()


def test_the_pretrained_weights_know_what_sentences_mean(encoder):
    e = _embed(encoder, ["A cat is sitting on the mat.", "The cat sits on a mat.",
                         "Stock markets fell sharply on Monday."])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    same, other = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > 0.8 and other < 0.3, (same, other)


def test_padding_does_not_move_the_embedding(encoder):
    short = tokenize(["The value is determined when the interpreter starts."], seq_len=16)
    long = tokenize(["The value is determined when the interpreter starts."], seq_len=128)
    with torch.no_grad():
        a, b = (encoder(*(torch.from_numpy(f[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
                for f in (short, long))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_data_source_gives_token_arrays_of_the_model_inputs():
    d = sentence_tokens("test")
    assert set(d) == {"input_ids", "attention_mask", "token_type_ids"}
    assert d["input_ids"].shape == (len(sentences("test")), 128) and d["input_ids"].dtype == np.int64
    assert (d["input_ids"][:, 0] == 101).all()  # [CLS]


def test_the_shipped_minilm_recipe_loads_with_its_data_sources():
    from pathlib import Path

    import compressor.recipes
    import targets
    from compressor.config.recipe import load_recipe
    from compressor.data import load_dataset

    rec = load_recipe(Path(compressor.recipes.__file__).parent / "minilm.yaml", targets.option_models())
    assert [v.mode for v in rec.steps[0].quantize.variants] == ["static", "dynamic"]
    assert all(v.outliers == "auto" for v in rec.steps[0].quantize.variants)
    cal = load_dataset(rec.data.calibration, rec.model.inputs, rec.base_dir)
    ev = load_dataset(rec.data.evaluation, rec.model.inputs, rec.base_dir)
    assert len(cal) == 128 and len(ev) == 128
    assert not {r.tobytes() for r in cal.inputs["input_ids"]} & {r.tobytes() for r in ev.inputs["input_ids"]}
