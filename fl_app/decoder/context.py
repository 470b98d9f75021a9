"""A word-pair prior: how much more likely a candidate is after the word before it.

A keyboard knows the text before the cursor. The frequency prior scores a word alone; this one
scores it after the previous word, from counts of single words and of word pairs in a corpus:

    feature(w | p) = log(share * P(w | p) / P(w) + 1 - share)

P(w | p) = count(p w) / count(p) and P(w) = count(w) / total, both from the corpus. A word
seen after `p` more often than its frequency predicts gains, one never seen after it loses
log(1 - share), and a previous word the corpus does not know changes nothing (0 for every
candidate). The feature is added to the fused score with a weight of its own, so the unigram
prior the decoder already has stays as it is (`bench/context_prior.py` measures it on real
people).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class CountsFileError(ValueError):
    """A counts file with a line that is not words followed by a positive count."""


def read_counts(path: Path, words_per_line: int) -> dict[tuple[str, ...], float]:
    """`words_per_line` words then a count per line, split on any whitespace (tab- and
    space-separated files alike; `.gz` read as gzip). Words are lower-cased and counts of the
    same key added."""
    opener = gzip.open if path.suffix == ".gz" else open
    counts: dict[tuple[str, ...], float] = {}
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != words_per_line + 1:
                raise CountsFileError(
                    f"{path}:{number}: expected {words_per_line} word(s) and a count, "
                    f"got {line.strip()!r}"
                )
            try:
                count = float(fields[-1])
            except ValueError:
                count = float("nan")
            if not count > 0 or math.isinf(count):
                raise CountsFileError(f"{path}:{number}: bad count {fields[-1]!r}")
            key = tuple(w.lower() for w in fields[:-1])
            counts[key] = counts.get(key, 0.0) + count
    return counts


class WordPairPrior:
    """Unigram and word-pair counts of one corpus."""

    def __init__(self, unigrams: dict[str, float], pairs: dict[tuple[str, str], float]):
        self.unigrams = unigrams
        self.pairs = pairs
        self.total = float(sum(unigrams.values()))

    @classmethod
    def from_files(cls, unigrams: Path, pairs: Path) -> WordPairPrior:
        return cls(
            {k[0]: c for k, c in read_counts(unigrams, 1).items()},
            {(k[0], k[1]): c for k, c in read_counts(pairs, 2).items()},
        )

    def ratios(self, previous: str | None, words: Sequence[str]) -> np.ndarray | None:
        """P(w | previous) / P(w) of each candidate (0 for a pair the corpus never saw), or
        None when there is no previous word the corpus knows: what `feature` is made of, kept
        apart so that a tuning grid reads the counts once per swipe."""
        if previous is None or previous not in self.unigrams:
            return None
        before = self.unigrams[previous]
        out = np.zeros(len(words))
        for i, word in enumerate(words):
            pair = self.pairs.get((previous, word), 0.0)
            alone = self.unigrams.get(word, 0.0)
            if pair > 0 and alone > 0:
                out[i] = (pair / before) / (alone / self.total)
        return out

    def feature(self, previous: str | None, words: Sequence[str], share: float) -> np.ndarray:
        """The context feature of each candidate in `words` after `previous` (module doc)."""
        return context_feature(self.ratios(previous, words), share, len(words))


def context_feature(ratios: np.ndarray | None, share: float, candidates: int) -> np.ndarray:
    """log(share * ratio + 1 - share); zeros when there is no context (`ratios` None)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if ratios is None or share == 0.0:
        return np.zeros(candidates)
    return np.log(share * ratios + (1.0 - share))


def previous_words(rows: Iterable[tuple[str, int]], words: Sequence[str]) -> list[str | None]:
    """For each (user, seq) row, the word of that user's row seq - 1 among `words` (the same
    order as `rows`), or None when the user has no such row: the word swiped just before."""
    keys = list(rows)
    at = {key: i for i, key in enumerate(keys)}
    out: list[str | None] = []
    for user, seq in keys:
        before = at.get((user, seq - 1))
        out.append(None if before is None else words[before])
    return out
