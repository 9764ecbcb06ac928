"""The BERT-style encoder factory and the built-in sentence-like data source."""

from pathlib import Path

import numpy as np
import pytest
import torch

import compressor.recipes
import targets
from compressor.data import load_dataset
from compressor.errors import DataError, ModelLoadError
from compressor.model import load_model
from compressor.config.recipe import DataSource, InputSpec, ModelSpec, load_recipe
from compressor.zoo.text import BERT_FIRST_WORD, TEXT_SAMPLES, bert_encoder, sentence_tokens

TINY = {"vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64}
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def text_inputs(seq: int, names=TEXT_INPUTS, dtype: str = "int64") -> list[InputSpec]:
    return [InputSpec(name=n, shape=[1, seq], dtype=dtype if n == "input_ids" else "int64") for n in names]


def test_sentences_look_like_tokenised_text():
    arrays = sentence_tokens(256, 128)
    ids, mask, types = arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]
    lengths = mask.sum(1)
    # Varied lengths: short sentences and some that fill the whole length, mask = a prefix of ones.
    assert lengths.min() <= 16 and lengths.max() == 128 and len(np.unique(lengths)) > 40
    assert np.all(np.diff(mask, axis=1) <= 0)
    assert np.all(ids[:, 0] == 101) and np.all(ids[np.arange(256), lengths - 1] == 102)
    assert np.all(ids[mask == 0] == 0) and np.all(types[mask == 0] == 0)
    words = ids[(mask == 1) & (ids != 101) & (ids != 102)]
    assert words.min() >= BERT_FIRST_WORD and words.max() < 30522
    # Zipf: a few ids carry much of the text, and many distinct ids appear once in a while.
    counts = np.sort(np.bincount(words))[::-1]
    assert counts[:10].sum() > 0.25 * len(words) and np.count_nonzero(counts) > 1000
    # Sentence pairs: segment 1 starts right after an inner [SEP] and runs to the final one.
    pairs = np.flatnonzero(types.any(1))
    assert 0.2 < len(pairs) / 256 < 0.5
    for i in pairs[:20]:
        first_b = int(np.argmax(types[i]))
        assert ids[i, first_b - 1] == 102 and types[i, first_b:lengths[i]].all()


def test_sentences_source_keys_by_input_name_splits_and_respects_vocab():
    inputs = text_inputs(32, names=("input_ids", "attention_mask"))
    train = load_dataset(DataSource(source="sentences", split="train", vocab_size=500), inputs)
    test = load_dataset(DataSource(source="sentences", split="test", vocab_size=500, limit=20), inputs)
    assert sorted(train.inputs) == ["attention_mask", "input_ids"] and train.labels is None
    assert len(train) == TEXT_SAMPLES * 3 // 4 and len(test) == 20
    assert train.inputs["input_ids"].shape == (len(train), 32) and train.inputs["input_ids"].dtype == np.int64
    assert train.inputs["input_ids"].max() < 500
    again = load_dataset(DataSource(source="sentences", split="test", vocab_size=500, limit=20), inputs)
    np.testing.assert_array_equal(test.inputs["input_ids"], again.inputs["input_ids"])
    # The split is a cut of one set: the test rows are not the first train rows.
    assert not np.array_equal(test.inputs["input_ids"], train.inputs["input_ids"][:20])


def test_sentences_source_refuses_inputs_it_cannot_feed():
    with pytest.raises(DataError, match="inputs named input_ids, attention_mask, token_type_ids"):
        load_dataset(DataSource(source="sentences"), [InputSpec(name="pixels", shape=[1, 3, 8, 8])])
    with pytest.raises(DataError, match=r"\[batch, sequence\]"):
        load_dataset(DataSource(source="sentences"), [InputSpec(name="input_ids", shape=[1, 4, 8], dtype="int64")])
    with pytest.raises(ValueError, match="'vocab_size' applies to the 'sentences' source only"):
        DataSource(source="digits", vocab_size=100)


def test_encoder_returns_hidden_states_and_pooler_and_ignores_padding():
    enc = bert_encoder(**TINY)
    arrays = sentence_tokens(4, 16, vocab_size=1000)
    args = [torch.from_numpy(arrays[n]) for n in TEXT_INPUTS]
    with torch.no_grad():
        hidden, pooled = enc(*args)
        # The same sentence padded further: its real tokens' states do not change.
        longer = [torch.nn.functional.pad(a, (0, 16)) for a in args]
        hidden_long, _ = enc(*longer)
    assert hidden.shape == (4, 16, 32) and pooled.shape == (4, 32)
    n = int(arrays["attention_mask"][0].sum())
    torch.testing.assert_close(hidden_long[0, :n], hidden[0, :n], atol=1e-5, rtol=1e-4)
    # Same seed, same weights; another seed, other weights.
    same = bert_encoder(**TINY).state_dict()
    other = bert_encoder(seed=1, **TINY).state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(same[key], enc.state_dict()[key]) and not torch.equal(other[key], same[key])


def test_bad_text_inputs_fail_with_one_line():
    spec = ModelSpec(factory="compressor.zoo.text:bert_encoder", kwargs=TINY, inputs=text_inputs(80))
    with pytest.raises(ModelLoadError) as e:
        load_model(spec)
    msg = str(e.value)
    assert "\n" not in msg and "sequence length 80 exceeds the model's max_position_embeddings 64" in msg
    spec = ModelSpec(factory="compressor.zoo.text:bert_encoder", kwargs=TINY, inputs=text_inputs(16, dtype="float32"))
    with pytest.raises(ModelLoadError) as e:
        load_model(spec)
    assert "\n" not in str(e.value) and "input_ids must be integer token ids (int64)" in str(e.value)


def test_shipped_bert_recipe_is_valid_and_feeds_its_encoder():
    rec = load_recipe(Path(compressor.recipes.__file__).parent / "bert_base.yaml", targets.option_models())
    assert rec.model.factory == "compressor.zoo.text:bert_encoder"
    assert [v.mode for v in rec.quant_variants] == ["dynamic"] and set(rec.targets) == {"onnx", "torchscript"}
    data = load_dataset(rec.data.evaluation, rec.model.inputs)
    assert len(data) == 32 and data.inputs["input_ids"].shape == (32, 128)
