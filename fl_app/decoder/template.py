"""SHARK2-style template decoding (Kristensson & Zhai 2004): no training, the baseline.

Each lexicon word's template is the polyline through its key centres. A trace is compared
with every plausible template on two channels, *shape* (both normalised for position and
scale) and *location* (absolute, in key units), and a word-frequency prior is added. The same
pruning and scoring give the learned decoder its shortlist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fl_app.decoder.features import collapse_repeats, path_lengths, positions_at
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.template_cache import TieredCache

N_SAMPLES = 32
COARSE_STRIDE = 4
MIN_CANDIDATES = 32  # never shortlist fewer words than this (k is at most 8)


@dataclass
class TemplateParams:
    """The baseline's few weights; tuned on a separate set of synthetic users."""

    sigma_shape: float = 0.12
    sigma_location: float = 0.6
    prior_weight: float = 0.3
    start_radius: float = 1.6  # key units: first key must lie this close to the trace start
    end_radius: float = 2.6  # endings are sloppier than starts
    coarse_keep: int = 300  # words a coarse location pass keeps before the full comparison

    def to_dict(self) -> dict:
        return asdict(self)


def resample_path(xy: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """(m, 2) polyline -> (n, 2) points equally spaced along its length."""
    cum = path_lengths(xy)
    if cum[-1] <= 1e-9:
        return np.repeat(xy[:1], n, axis=0)
    return positions_at(xy, cum, np.linspace(0.0, cum[-1], n))


def normalise_shape(paths: np.ndarray) -> np.ndarray:
    """(..., n, 2): centre on the centroid and scale the bounding box's longer side to 1."""
    centred = paths - paths.mean(axis=-2, keepdims=True)
    extent = (paths.max(axis=-2) - paths.min(axis=-2)).max(axis=-1)
    return centred / np.maximum(extent, 1e-6)[..., None, None]


@dataclass
class Templates:
    """A lexicon's templates on one keyboard geometry (key units)."""

    # Paths are stored (words, 2, points): x then y, each a contiguous row, so a candidate's
    # distances are a few flat array operations (`_mean_distance`), not a reduction over a
    # trailing axis of two.
    word_index: np.ndarray  # lexicon indices the keyboard can type
    location: np.ndarray  # (words, 2, n)
    coarse: np.ndarray  # (words, 2, n / COARSE_STRIDE): every few points, for a quick first pass
    shape: np.ndarray  # (words, 2, n)
    start_key: np.ndarray  # (words,) index of the first letter's key in `key_centres`
    end_key: np.ndarray  # (words,) index of the last letter's key
    key_centres: np.ndarray  # (letters, 2): a trace's distance to a word's first/last key is
    # its distance to one of these few points, computed once per trace instead of per word
    log_prior: np.ndarray  # (words,)


def resample_paths(paths: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """`resample_path` for many polylines of one length at once: (words, m, 2) -> (words, n, 2)."""
    if paths.shape[1] == 1:
        return np.repeat(paths, n, axis=1)
    seg = np.linalg.norm(np.diff(paths, axis=1), axis=-1)
    cum = np.concatenate([np.zeros((len(paths), 1)), np.cumsum(seg, axis=1)], axis=1)
    grid = np.linspace(0.0, 1.0, n)[None, :] * cum[:, -1:]
    # Segment of each grid point, and how far along it the point lies.
    j = np.clip((cum[:, None, 1:-1] <= grid[:, :, None]).sum(-1), 0, paths.shape[1] - 2)
    lo = np.take_along_axis(cum, j, axis=1)
    length = np.take_along_axis(seg, j, axis=1)
    frac = np.where(length > 1e-9, (grid - lo) / np.maximum(length, 1e-9), 0.0)[..., None]
    start = np.take_along_axis(paths, j[..., None], axis=1)
    end = np.take_along_axis(paths, j[..., None] + 1, axis=1)
    return start + np.clip(frac, 0.0, 1.0) * (end - start)


def build_templates(lexicon: Lexicon, keyboard: Keyboard) -> Templates:
    """Templates of every lexicon word the keyboard can type (vectorised by word length)."""
    centres = keyboard.letter_centres_ku
    letter = keyboard.letter_index
    keep = [i for i, w in enumerate(lexicon.words) if keyboard.can_type(w)]
    location = np.zeros((len(keep), N_SAMPLES, 2))
    by_length: dict[int, list[int]] = {}
    letters = [[letter[ch] for ch in collapse_repeats(lexicon.words[i])] for i in keep]
    for row, seq in enumerate(letters):
        by_length.setdefault(len(seq), []).append(row)
    for rows in by_length.values():
        location[rows] = resample_paths(centres[np.array([letters[r] for r in rows])])
    return Templates(
        word_index=np.array(keep, dtype=np.int64),
        location=_by_coordinate(location),
        coarse=_by_coordinate(location[:, ::COARSE_STRIDE]),
        shape=_by_coordinate(normalise_shape(location)),
        start_key=np.array([seq[0] for seq in letters], dtype=np.int64),
        end_key=np.array([seq[-1] for seq in letters], dtype=np.int64),
        key_centres=np.asarray(centres, dtype=np.float64),
        log_prior=lexicon.log_prior[keep],
    )


class TemplateDecoder:
    """Scores lexicon words against a trace; caches templates per key arrangement.

    The cache (`TieredCache`) keeps the arrangements used most, so a stream of other keyboard
    geometries cannot evict the templates of the keyboard the device types on.
    """

    def __init__(self, lexicon: Lexicon, params: TemplateParams | None = None) -> None:
        self.params = params or TemplateParams()
        self.lexicon = lexicon

    @property
    def lexicon(self) -> Lexicon:
        return self._lexicon

    @lexicon.setter
    def lexicon(self, lexicon: Lexicon) -> None:
        self._lexicon = lexicon
        self.cache: TieredCache[Templates] = TieredCache()  # a new one: readers keep theirs

    def templates(self, keyboard: Keyboard) -> Templates:
        cache = self.cache  # cache first: a lexicon change sets the lexicon, then the cache
        lexicon = self._lexicon
        return cache.get(keyboard.layout_key, lambda: build_templates(lexicon, keyboard))

    def channel_distances(
        self, points: np.ndarray, keyboard: Keyboard
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pruned candidates (positions in Templates) with their shape and location distances."""
        return self._distances(points, keyboard, self.templates(keyboard), self.params)

    def _distances(
        self, points: np.ndarray, keyboard: Keyboard, tpl: Templates, p: TemplateParams
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        trace = resample_path(keyboard.to_key_units(points[:, :2]))
        # Per key first (a few dozen), then one boolean gather per word.
        key_start = _row_norm(tpl.key_centres - trace[0])
        key_end = _row_norm(tpl.key_centres - trace[-1])
        fits = (key_start <= p.start_radius)[tpl.start_key] & (key_end <= p.end_radius)[tpl.end_key]
        cand = np.flatnonzero(fits)
        if len(cand) < MIN_CANDIDATES:  # a wild trace: take the words whose ends fit best
            m = min(MIN_CANDIDATES, len(fits))
            misfit = key_start[tpl.start_key] / p.start_radius + key_end[tpl.end_key] / p.end_radius
            cand = np.argpartition(misfit, m - 1)[:m]
        trace32 = trace.astype(np.float32)
        if len(cand) > p.coarse_keep:
            d_coarse = _mean_distance(tpl.coarse, cand, trace32[::COARSE_STRIDE])
            cand = cand[np.argpartition(d_coarse, p.coarse_keep - 1)[: p.coarse_keep]]
        d_loc = _mean_distance(tpl.location, cand, trace32)
        d_shape = _mean_distance(tpl.shape, cand, normalise_shape(trace32))
        return cand, d_shape.astype(np.float64), d_loc.astype(np.float64)

    def score_candidates(
        self, points: np.ndarray, keyboard: Keyboard, params: TemplateParams | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lexicon indices, template log-likelihood without prior, log prior) of candidates;
        `params` (radii and coarse pass included) in place of the decoder's own."""
        p = params or self.params
        tpl = self.templates(keyboard)  # one lookup: candidates index this very bank
        cand, d_shape, d_loc = self._distances(points, keyboard, tpl, p)
        loglik = -0.5 * (d_shape / p.sigma_shape) ** 2 - 0.5 * (d_loc / p.sigma_location) ** 2
        return tpl.word_index[cand], loglik, tpl.log_prior[cand]

    def decode(self, points: np.ndarray, keyboard: Keyboard, k: int = 4) -> list[tuple[str, float]]:
        idx, loglik, prior = self.score_candidates(points, keyboard)
        return top_k_words(self._lexicon, idx, loglik + self.params.prior_weight * prior, k)


def _by_coordinate(paths: np.ndarray) -> np.ndarray:
    """(words, n, 2) -> the (words, 2, n) float32 layout `_mean_distance` reads."""
    return np.ascontiguousarray(paths.transpose(0, 2, 1), dtype=np.float32)


def _mean_distance(bank: np.ndarray, rows: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Mean point-to-point distance between `path` (n, 2) and each of `bank`'s paths `rows`
    ((words, 2, n)): in place on the two gathered coordinate rows, no temporary per step."""
    dx = bank[rows, 0]
    dy = bank[rows, 1]
    dx -= path[:, 0]
    dy -= path[:, 1]
    dx *= dx
    dy *= dy
    dx += dy
    return np.sqrt(dx, out=dx).mean(-1)


def _row_norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (faster than np.linalg.norm for small vectors)."""
    return np.sqrt(np.einsum("...i,...i->...", v, v))


def top_k_words(
    lexicon: Lexicon, idx: np.ndarray, scores: np.ndarray, k: int
) -> list[tuple[str, float]]:
    """The k best (word, score) pairs, best first."""
    k = min(k, len(idx))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(lexicon.words[idx[i]], float(scores[i])) for i in top]
