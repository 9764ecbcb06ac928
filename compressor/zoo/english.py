"""Real English sentences from text that ships with Python (the language reference's
help topics in `pydoc_data`) and scikit-learn (its dataset descriptions): calibration
and validation text for trained language models, with nothing downloaded.

The two splits never share a sentence: each sentence goes to one by a hash of its
text, so the split does not move when a Python release adds or edits topics.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path

MIN_WORDS, MAX_WORDS = 6, 60
# One sentence in VALIDATION_SHARE goes to validation ("test"), the rest to calibration ("train").
VALIDATION_SHARE = 3
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
# Code, markup and tables are not prose.
_NOT_PROSE = re.compile(r"[*`|=_]{2}|[{}<>\\]|\.\.\s|\s-{2,}|https?:")


def _paragraphs() -> list[str]:
    import pydoc_data.topics

    out = [p for body in pydoc_data.topics.topics.values() for p in re.split(r"\n\s*\n", body)]
    try:
        import sklearn.datasets

        descr = Path(sklearn.datasets.__file__).parent / "descr"
        for rst in sorted(descr.glob("*.rst")):
            out += re.split(r"\n\s*\n", rst.read_text(encoding="utf-8", errors="replace"))
    except ImportError:  # scikit-learn is a dependency; the Python text alone suffices
        pass
    return out


@lru_cache(maxsize=1)
def _all() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for para in _paragraphs():
        if para.startswith("   ") or "::" in para or ">>>" in para:  # code blocks
            continue
        for s in _SPLIT.split(" ".join(para.split())):
            words = len(s.split())
            if MIN_WORDS <= words <= MAX_WORDS and s[0].isupper() and s[-1] in ".!?" and not _NOT_PROSE.search(s):
                seen.setdefault(s, None)
    return tuple(seen)


def sentences(split: str = "all") -> list[str]:
    """The sentences of `split`: 'train' (calibration), 'test' (validation) or 'all', in a
    fixed order."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', not {split!r}")
    if split == "all":
        return list(_all())
    want_test = split == "test"
    return [s for s in _all() if (zlib.crc32(s.encode()) % VALIDATION_SHARE == 0) == want_test]
