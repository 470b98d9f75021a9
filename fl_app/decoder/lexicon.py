"""Lexicons: words with frequencies, per language. Data, not model: adding a word needs no
retraining, because the decoder scores any letter sequence."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
# Frequency given to user-added words when none is known: about a rare lexicon word's.
DEFAULT_ADDED_FREQ = 1e-6


@dataclass
class Lexicon:
    """Words (unique, lower-case) and their relative frequencies."""

    words: list[str]
    freqs: np.ndarray
    language: str = "en"
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.freqs = np.asarray(self.freqs, dtype=np.float64)
        if len(self.words) != len(self.freqs):
            raise ValueError("words and freqs differ in length")
        self._index = {w: i for i, w in enumerate(self.words)}
        if len(self._index) != len(self.words):
            raise ValueError("lexicon words must be unique")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def index(self, word: str) -> int:
        return self._index[word]

    @property
    def log_prior(self) -> np.ndarray:
        """log p(word), normalised over the lexicon."""
        p = self.freqs / self.freqs.sum()
        return np.log(np.maximum(p, 1e-12))

    @cached_property
    def lexicon_id(self) -> str:
        """Identifies the word list (manifests record which lexicon a model was evaluated on)."""
        digest = hashlib.sha1("\n".join(self.words).encode()).hexdigest()[:12]
        return f"{self.language}-{len(self)}-{digest}"

    def with_words(self, words: dict[str, float] | list[str]) -> Lexicon:
        """A new lexicon with extra words (existing ones keep their frequency)."""
        extra = words if isinstance(words, dict) else {w: DEFAULT_ADDED_FREQ for w in words}
        new_words = list(self.words)
        new_freqs = list(self.freqs)
        for word, freq in extra.items():
            if word not in self._index:
                new_words.append(word)
                new_freqs.append(float(freq))
        return Lexicon(new_words, np.array(new_freqs), self.language)

    def subset(self, keep: np.ndarray) -> Lexicon:
        idx = np.flatnonzero(keep)
        return Lexicon([self.words[i] for i in idx], self.freqs[idx], self.language)


@lru_cache(maxsize=8)
def _read_tsv(path: Path) -> tuple[tuple[str, ...], tuple[float, ...]]:
    words, freqs = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            word, freq = line.rstrip("\n").split("\t")
            words.append(word)
            freqs.append(float(freq))
    return tuple(words), tuple(freqs)


def load_lexicon(language: str = "en", size: int = 10000) -> Lexicon:
    """The `size` most frequent words of the committed lexicon for `language`."""
    path = DATA_DIR / f"lexicon-{language}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"no lexicon for language {language!r} ({path})")
    words, freqs = _read_tsv(path)
    return Lexicon(list(words[:size]), np.array(freqs[:size]), language)
