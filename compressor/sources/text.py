"""Text data: a UTF-8 file, one sample a line, tokenized with a Hugging Face tokenizer
into a text model's inputs (input_ids, attention_mask, token_type_ids) by name, padded
and truncated to the model's declared sequence length; and the built-in `sentences` source
(sentence-like token ids, compressor.zoo.text) for the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.config.model import TEXT_INPUTS, InputSpec
from compressor.errors import DataError



def text_dataset(src, inputs: list[InputSpec], base_dir: Path, tokenizer: Path | None):
    """(the input arrays, how messages name it) for a `text:` data source; its `tokenizer:` folder
    wins over the model's own `tokenizer`."""
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base_dir / p

    path = resolve(Path(src.text))
    origin = f"text data {path}"
    folder = resolve(Path(src.tokenizer)) if src.tokenizer is not None else tokenizer
    return from_text(path, folder, inputs, origin), origin


def from_text(path: Path, tokenizer: Path | None, inputs: list[InputSpec], origin: str) -> dict[str, np.ndarray]:
    """The lines of a UTF-8 text file (blank ones skipped), tokenized into the model's text
    inputs by name, padded and truncated to their declared sequence length."""
    names = [i.name for i in inputs]
    other = [n for n in names if n not in TEXT_INPUTS]
    if "input_ids" not in names or other:
        raise DataError(f"{origin}: text is tokenized into {', '.join(TEXT_INPUTS)} (input_ids required); the "
                        f"model takes {names}")
    lengths = {tuple(i.shape[1:]) for i in inputs}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise DataError(f"{origin}: tokenized text gives [batch, sequence] arrays; the model declares "
                        f"{', '.join(f'{i.name} {i.shape}' for i in inputs)}")
    lines = _text_lines(path, origin)
    if tokenizer is None:
        raise DataError(f"{origin}: the model brings no tokenizer; add 'tokenizer: <a Hugging Face tokenizer "
                        "folder>' to this data source, or use an 'hf' model source")
    from compressor.sources.hf import load_tokenizer

    tok = load_tokenizer(tokenizer, origin, DataError)
    seq = next(iter(lengths))[0]
    enc = tok(lines, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    arrays = {}
    for name in names:
        if name in enc:
            arrays[name] = np.asarray(enc[name], dtype=np.int64)
        elif name == "token_type_ids":  # tokenizers of one-segment models leave it out: all segment 0
            arrays[name] = np.zeros_like(np.asarray(enc["input_ids"]), dtype=np.int64)
        else:
            raise DataError(f"{origin}: the tokenizer in {tokenizer} gives {sorted(enc)}, not {name!r}")
    return arrays


def _text_lines(path: Path, origin: str) -> list[str]:
    try:
        if path.is_dir():
            raise DataError(f"{origin} is a directory; give a text file, one sample a line")
        if not path.is_file():
            raise DataError(f"{origin}: no such file")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{origin} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8, one sample "
                        "a line") from None
    except OSError as e:
        raise DataError(f"{origin} cannot be read ({e.strerror or type(e).__name__})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{origin} holds no text (no non-blank line); write one sample a line")
    return lines
