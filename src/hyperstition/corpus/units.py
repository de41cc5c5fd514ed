"""Word units, the corpus's size measure: words, punctuation marks and special tokens (the BPE tokenizer is
trained on the corpus afterwards, so it cannot define the corpus's budget)."""

from __future__ import annotations

import re

UNIT_RE = re.compile(r"<\|[^|<>]+\|>|\w+|[^\w\s]")


def count_units(text: str) -> int:
    return len(UNIT_RE.findall(text))
