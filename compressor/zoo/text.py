"""A BERT-style sentence encoder (transformers' BertModel from a config, seeded random
weights) and sentence-like token ids to feed it.

Latency and size do not depend on the weight values; what int8 does to the outputs
does depend on the inputs, so the data source imitates tokenised text rather than
uniform random ids: [CLS] words [SEP] (sometimes a second segment), word ids drawn
from a Zipf law as in real corpora, padding and attention masks of varied lengths.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compressor.config.model import TEXT_INPUTS, InputSpec
from compressor.errors import DataError

# bert-base-uncased's vocabulary: [PAD]=0, [CLS]=101, [SEP]=102, ordinary wordpieces
# from 999 on, roughly in order of frequency from 1996 ("the").
BERT_VOCAB = 30522
BERT_SPECIALS = (0, 101, 102)
BERT_FIRST_WORD = 999
ZIPF_EXPONENT = 1.1
TEXT_SEED = 0
TEXT_SAMPLES = 512


class BertEncoder(nn.Module):
    """BertModel taking (input_ids, attention_mask[, token_type_ids]) and returning
    (last_hidden_state, pooler_output) as a plain tuple, so every exporter sees tensors."""

    gives_embeddings = True  # hidden states and a pooled vector: no class scores to take top-1 of

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.max_positions = int(bert.config.max_position_embeddings)

    def _check(self, input_ids: torch.Tensor) -> None:
        if input_ids.is_floating_point():
            raise TypeError(f"input_ids must be integer token ids (int64), got {input_ids.dtype}; "
                            "declare dtype: int64 for the text inputs")
        if input_ids.shape[-1] > self.max_positions:
            raise ValueError(f"sequence length {input_ids.shape[-1]} exceeds the model's "
                             f"max_position_embeddings {self.max_positions}; shorten the input shape "
                             "or raise max_position_embeddings in the factory kwargs")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Shapes are static under torch.export, so these checks cost nothing in its graph;
        # a TorchScript trace would record the comparison as a constant, so it skips them.
        if not torch.jit.is_tracing():
            self._check(input_ids)
        if attention_mask is not None:
            # BERT's classic additive mask, built here once: transformers' own mask utilities
            # export to a Range/GatherND/And/Where subgraph; this one is Unsqueeze-Cast-Sub-Mul.
            keep = attention_mask[:, None, None, :].to(torch.float32)
            attention_mask = (1.0 - keep) * torch.finfo(torch.float32).min
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        return_dict=True)
        return out.last_hidden_state, out.pooler_output


def bert_encoder(seed: int = 0, vocab_size: int = BERT_VOCAB, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 3072,
                 max_position_embeddings: int = 512, type_vocab_size: int = 2,
                 attention: str = "eager", initializer_range: float = 0.02) -> BertEncoder:
    """Factory used by recipes: `factory: compressor.zoo.text:bert_encoder`; bert-base
    dimensions by default, smaller ones through kwargs. `attention` is transformers'
    attn_implementation: 'eager' exports plain MatMul/Softmax attention ('sdpa' adds
    IsNaN/Where guards to every layer). `initializer_range` is the std of the normal
    weight init (BERT's own 0.02); wider weights make each layer weigh more against the
    residual stream, a harder case for int8 (the bert suite measures both)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
                        initializer_range=initializer_range, attn_implementation=attention)
    torch.manual_seed(seed)
    return BertEncoder(BertModel(config, add_pooling_layer=True)).eval()


def sentence_tokens(n: int, seq_len: int, vocab_size: int = BERT_VOCAB, seed: int = TEXT_SEED,
                    type_vocab_size: int = 2) -> dict[str, np.ndarray]:
    """`n` tokenised sentence-like inputs padded to `seq_len`: int64 `input_ids`,
    `attention_mask` and `token_type_ids`. Lengths vary from a few words to the full
    length; a third are sentence pairs ([CLS] a [SEP] b [SEP], segment ids 0/1)."""
    if seq_len < 4:
        raise ValueError(f"sentence-like inputs need a sequence length of at least 4, got {seq_len}")
    pad, cls, sep, first = _special_ids(vocab_size)
    words = vocab_size - first
    rng = np.random.default_rng(seed)
    ids = np.full((n, seq_len), pad, dtype=np.int64)
    mask = np.zeros((n, seq_len), dtype=np.int64)
    types = np.zeros((n, seq_len), dtype=np.int64)
    # Short and medium sentences dominate, as in real text; some fill the whole length.
    lengths = np.clip(np.rint(rng.lognormal(np.log(seq_len / 4), 0.7, n)), 4, seq_len).astype(int)
    for i, length in enumerate(lengths):
        body = length - 2
        pair = type_vocab_size > 1 and body >= 6 and rng.random() < 1 / 3
        tokens = first + (rng.zipf(ZIPF_EXPONENT, body) - 1) % words
        row = [cls, *tokens.tolist(), sep]
        if pair:  # split the body into two segments: [CLS] a [SEP] b [SEP]
            cut = int(rng.integers(2, body - 2))
            row = [cls, *tokens[:cut].tolist(), sep, *tokens[cut + 1:].tolist(), sep]
            types[i, cut + 2:length] = 1
        ids[i, :length] = row[:length]
        mask[i, :length] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _special_ids(vocab_size: int) -> tuple[int, int, int, int]:
    """(pad, cls, sep, first word id): BERT's own ids when the vocabulary is BERT-sized,
    the first few ids of a small test vocabulary otherwise."""
    if vocab_size > BERT_FIRST_WORD + 100:
        return (*BERT_SPECIALS, BERT_FIRST_WORD)
    if vocab_size < 8:
        raise ValueError(f"vocab_size {vocab_size} is too small for sentence-like inputs (need at least 8)")
    return 0, 1, 2, 3


def sentence_arrays(split: str, inputs: list[InputSpec], vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """Sentence-like token ids for the model's text inputs (input_ids, attention_mask,
    token_type_ids, padded to the declared sequence length). The train/test split is a
    fixed cut of one seeded set of TEXT_SAMPLES sequences."""
    names = [i.name for i in inputs]
    known = TEXT_INPUTS
    other = [n for n in names if n not in known]
    if "input_ids" not in names or other:
        raise DataError(f"data source 'sentences' feeds text encoders with inputs named {', '.join(known)} "
                        f"(input_ids required); the model declares {names}")
    shapes = {tuple(i.shape[1:]) for i in inputs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise DataError(f"data source 'sentences' gives [batch, sequence] token arrays; the model declares "
                        f"{', '.join(f'{i.name} {i.shape}' for i in inputs)}")
    seq_len = next(iter(shapes))[0]
    try:
        arrays = sentence_tokens(TEXT_SAMPLES, seq_len, vocab_size or BERT_VOCAB,
                                 type_vocab_size=2 if "token_type_ids" in names else 1)
    except ValueError as e:
        raise DataError(f"data source 'sentences': {e}") from None
    cut = TEXT_SAMPLES * 3 // 4
    part = {"train": slice(0, cut), "test": slice(cut, None), "all": slice(None)}[split]
    return {n: arrays[n][part] for n in names}
