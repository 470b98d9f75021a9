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

import functools
import gzip
import hashlib
import importlib.util
import io
import json
import math
from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


class CountsFileError(ValueError):
    """A counts file with a line that is not words followed by a positive count."""


def iter_counts(path: Path, words_per_line: int) -> Iterator[tuple[tuple[str, ...], float]]:
    """`words_per_line` words then a count per line, split on any whitespace (tab- and
    space-separated files alike; `.gz` read as gzip), words lower-cased; one line at a time."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from parse_counts(fh, words_per_line, path)


def parse_counts(
    lines: Iterable[str], words_per_line: int, source: Path
) -> Iterator[tuple[tuple[str, ...], float]]:
    """`iter_counts` over lines already open (`source` names them in errors)."""
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != words_per_line + 1:
            raise CountsFileError(
                f"{source}:{number}: expected {words_per_line} word(s) and a count, "
                f"got {line.strip()!r}"
            )
        try:
            count = float(fields[-1])
        except ValueError:
            count = float("nan")
        if not count > 0 or math.isinf(count):
            raise CountsFileError(f"{source}:{number}: bad count {fields[-1]!r}")
        yield tuple(w.lower() for w in fields[:-1]), count


def read_counts(path: Path, words_per_line: int) -> dict[tuple[str, ...], float]:
    """`iter_counts` as a dict, the counts of the same key added."""
    counts: dict[tuple[str, ...], float] = {}
    for key, count in iter_counts(path, words_per_line):
        counts[key] = counts.get(key, 0.0) + count
    return counts


class WordPairPrior:
    """P(w | previous) / P(w) for the word pairs of one corpus: all that the context feature
    reads, so a table of these ratios is what a device ships. Held as arrays (each word once,
    each previous word's followers sorted by id), a few MB where dicts of dicts took 60."""

    def __init__(self, pairs: Iterable[tuple[str, str, float]]):
        ids: dict[str, int] = {}
        previous, following, ratios = array("q"), array("q"), array("d")
        for before, word, ratio in pairs:  # streamed: no list of a quarter-million tuples
            previous.append(ids.setdefault(before, len(ids)))
            following.append(ids.setdefault(word, len(ids)))
            ratios.append(ratio)
        self.words = list(ids)
        self._ids = ids
        prev = np.frombuffer(previous, dtype=np.int64)
        nxt = np.frombuffer(following, dtype=np.int64)
        order = np.lexsort((nxt, prev))  # each previous word's followers sorted by id
        self._next = nxt[order].copy()
        self._ratio = np.frombuffer(ratios, dtype=np.float64)[order].copy()
        self._start = np.searchsorted(prev[order], np.arange(len(self.words) + 1))

    @classmethod
    def from_counts(
        cls, unigrams: Path, pairs: Path, vocabulary: Collection[str] | None = None
    ) -> WordPairPrior:
        """The ratios from a corpus's counts files (`read_counts`), keeping only pairs of words
        the unigram counts know (and, given a `vocabulary`, that it holds)."""
        alone = {k[0]: c for k, c in read_counts(unigrams, 1).items()}
        total = float(sum(alone.values()))
        kept = []
        for (previous, word), count in read_counts(pairs, 2).items():
            if previous not in alone or word not in alone:
                continue
            if vocabulary is not None and (previous not in vocabulary or word not in vocabulary):
                continue
            kept.append((previous, word, (count / alone[previous]) / (alone[word] / total)))
        return cls(kept)

    @classmethod
    def load(cls, path: Path, sha256: str | None = None) -> WordPairPrior:
        """A table `write` made (gzipped `previous word ratio` lines), read once: refused
        (ValueError) when `sha256` is given and the file's digest is another."""
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ValueError(f"{path}: sha256 {digest} is not the expected {sha256}")
        with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data)), encoding="utf-8") as fh:
            return cls((p, w, r) for (p, w), r in parse_counts(fh, 2, path))

    def write(self, path: Path) -> str:
        """Lines sorted by previous word then word, 4 significant digits, gzip without a
        timestamp: the same table always writes the same bytes. Returns their sha256."""
        lines = []
        for previous in sorted(self.words):
            pid = self._ids[previous]
            low, high = self._start[pid], self._start[pid + 1]
            after = sorted(
                (self.words[n], r) for n, r in zip(self._next[low:high], self._ratio[low:high])
            )
            lines += [f"{previous}\t{word}\t{ratio:.4g}\n" for word, ratio in after]
        data = gzip.compress("".join(lines).encode("utf-8"), 9, mtime=0)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def __len__(self) -> int:
        return len(self._next)

    def ratios(self, previous: str | None, words: Sequence[str]) -> np.ndarray | None:
        """P(w | previous) / P(w) of each candidate (0 for a pair the corpus never saw), or
        None when there is no previous word the table knows: what `context_feature` is made
        of, kept apart so that a tuning grid reads the table once per swipe."""
        pid = self._ids.get(previous, -1) if previous is not None else -1
        if pid < 0 or self._start[pid] == self._start[pid + 1]:
            return None
        low, high = self._start[pid], self._start[pid + 1]
        followers = self._next[low:high]
        ids = np.array([self._ids.get(w, -1) for w in words], dtype=np.int64)
        at = np.minimum(np.searchsorted(followers, ids), len(followers) - 1)
        found = followers[at] == ids
        return np.where(found, self._ratio[low + at], 0.0)

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


@dataclass(frozen=True)
class ContextPrior:
    """A word-pair table with the share and weight chosen for it on public-val users: what
    decoding adds to each candidate's fused score given the word before the cursor."""

    pairs: WordPairPrior
    share: float
    weight: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {self.share}")
        if not (math.isfinite(self.weight) and self.weight >= 0.0):
            raise ValueError(f"weight must be finite and non-negative, got {self.weight}")

    def bonus(self, previous: str | None, words: Sequence[str]) -> np.ndarray:
        """weight x the context feature of each candidate (zeros without a known previous)."""
        return self.weight * self.pairs.feature(previous, words, self.share)


# Packages whose data files hold English word and word-pair counts (read, not imported; the
# `context` extra installs them): name -> (unigram file, word-pair file).
COUNTS_PACKAGES = {
    "wordsegment": ("unigrams.txt", "bigrams.txt"),  # Google Web Trillion Word Corpus
    "symspellpy": (  # Google Books Ngram data, CC BY 3.0: the shipped table's source
        "frequency_dictionary_en_82_765.txt",
        "frequency_bigramdictionary_en_243_342.txt",
    ),
}


def package_prior(package: str, vocabulary: Collection[str] | None = None) -> WordPairPrior:
    """The ratios from an installed COUNTS_PACKAGES package's files (found, not imported);
    ModuleNotFoundError, saying how to install it, when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: pip install -e '.[context]'")
    folder = Path(spec.submodule_search_locations[0])
    unigrams, pairs = COUNTS_PACKAGES[package]
    return WordPairPrior.from_counts(folder / unigrams, folder / pairs, vocabulary)


def shipped_table(language: str) -> Path:
    """Where the package keeps a language's word-pair table (scripts/make_word_pairs.py)."""
    return DATA / f"word-pairs-{language}.tsv.gz"


def shipped_settings(language: str) -> Path:
    """The table's manifest: its source, licence, sha256, and the share and weight."""
    return DATA / f"word-pairs-{language}.json"


@functools.cache
def shipped_context(language: str) -> ContextPrior | None:
    """The language's shipped context prior (loaded once a process), or None when the package
    ships none for it. A table whose sha256 is not its manifest's is refused."""
    table, settings = shipped_table(language), shipped_settings(language)
    if not table.is_file():
        return None
    meta = json.loads(settings.read_text(encoding="utf-8"))
    pairs = WordPairPrior.load(table, meta["sha256"])
    return ContextPrior(pairs, float(meta["share"]), float(meta["weight"]))


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
