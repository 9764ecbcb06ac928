"""PyTorch model sources beyond a Python factory: a local Hugging Face folder (hf.py), a
timm name (timm_source.py), the weights files factories and timm read (checkpoint.py),
and text data tokenized for a text model's inputs (text.py).

Each builds a plain nn.Module whose forward takes tensors and returns tensors, so every
target exports it as it exports a factory's model. transformers and timm are imported
inside the functions that need them (`compressor --help` stays fast).
"""
