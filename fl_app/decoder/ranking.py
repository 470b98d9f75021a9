"""Lexicon decoding with the learned model.

The template channels (fl_app/decoder/template.py) shortlist plausible lexicon words; the model's
per-frame letter probabilities score each shortlisted word by its CTC likelihood; a weighted
sum with the template score and the frequency prior ranks them. Any letter sequence can be
scored, so words never seen in training and words added to the lexicon later decode too.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fl_app.decoder.context import ContextPrior
from fl_app.decoder.features import FeatureSpec, encode_word, swipe_features
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.model import SwipeModel, scripted
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.template import TemplateDecoder, TemplateParams, top_k_words

MAX_K = 8
IMPOSSIBLE = -1e4  # CTC log-likelihood given to words longer than the trace's frames


@dataclass
class FusionWeights:
    """How the learned decoder weighs its evidence (tuned on held-out tuning users).

    Candidates go through two cuts. The template pass (no model needed) keeps the `wide` best
    by template score and prior; once the model has run, the `shortlist` best of those by
    template, prior and `letters` x the model's positional letter score (`letter_scores`, a
    cheap look at the model's output) are CTC-scored. With `wide` == `shortlist` (and so for
    manifests written before `wide` existed) the second cut keeps everything.

    `length_bonus` is added to a candidate's fused score per letter of its CTC target: each
    letter costs CTC likelihood, so without it a short word wins the close calls against the
    longer one the trace also fits (a speech recogniser's word-insertion bonus). 0 (and so for
    manifests written before it existed) leaves the fused score as it was.
    """

    template: float = 0.3
    prior: float = 0.3
    shortlist: int = 96
    wide: int = 96
    letters: float = 0.0
    length_bonus: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Shortlist:
    """The lexicon words one swipe could be, before the model's evidence is added."""

    lexicon_index: np.ndarray
    template: np.ndarray
    prior: np.ndarray


@dataclass
class CandidateScores:
    """The evidence for each shortlisted word of one swipe (kept apart so weights can be tuned)."""

    lexicon_index: np.ndarray
    ctc: np.ndarray
    template: np.ndarray
    prior: np.ndarray
    target_length: np.ndarray  # letters of each word's CTC target (repeats collapsed)

    def combined(self, fusion: FusionWeights) -> np.ndarray:
        """The score candidates are ranked by (decoding and weight tuning both call it)."""
        return self.ctc + self.fixed_evidence(fusion)

    def fixed_evidence(self, fusion: FusionWeights) -> np.ndarray:
        """The part of `combined` the model does not move: template, prior and length bonus
        (word-level fine-tuning holds it fixed while the CTC scores learn)."""
        return (
            fusion.template * self.template
            + fusion.prior * self.prior
            + fusion.length_bonus * self.target_length
        )

    def subset(self, keep: np.ndarray) -> CandidateScores:
        """The evidence of the candidates `keep` selects (a boolean mask or indices)."""
        return CandidateScores(
            self.lexicon_index[keep],
            self.ctc[keep],
            self.template[keep],
            self.prior[keep],
            self.target_length[keep],
        )


def model_cut(
    fusion: FusionWeights, template: np.ndarray, prior: np.ndarray, letters: np.ndarray | float
) -> np.ndarray:
    """Positions of the `fusion.shortlist` candidates the model's cut keeps (by template, prior
    and positional letter score): decoding and weight tuning both cut with it."""
    pre = fusion.template * template + fusion.prior * prior + fusion.letters * letters
    return np.argpartition(-pre, fusion.shortlist - 1)[: fusion.shortlist]


def _ctc_nll_eager(
    logp: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """CTC negative log-likelihood of each target row under one swipe's (frames, classes)."""
    frames = logp.shape[0]
    n = targets.shape[0]
    return F.ctc_loss(
        logp.unsqueeze(1).expand(frames, n, logp.shape[1]),
        targets,
        torch.full([n], frames, dtype=torch.long),
        target_lengths,
        blank=0,
        reduction="none",
        zero_infinity=False,
    )


@functools.cache
def _ctc_nll() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """`_ctc_nll_eager` scripted (one GIL release for its ops), on first use: processes that
    never decode (trainers, ClientApps) do not pay for scripting at import."""
    return scripted(_ctc_nll_eager)


LETTER_BINS = 8  # positions along the trace the positional letter score distinguishes


@dataclass
class LexiconTargets:
    """Every lexicon word as a CTC target, padded: a shortlist's targets are two array
    lookups, not a Python loop per candidate (the GIL-held part of CTC scoring)."""

    padded: np.ndarray  # (words, longest) letter classes, 0-padded
    lengths: np.ndarray  # (words,)
    # (words, longest) index into a (classes x LETTER_BINS) table: each letter's class and where
    # along the word it lies (0 for padding, masked by `lengths`); see `letter_scores`.
    letter_bins: np.ndarray

    @classmethod
    def encode(cls, lexicon: Lexicon, spec: FeatureSpec) -> LexiconTargets:
        letters = set(spec.alphabet)
        # A word with a letter outside the model's alphabet gets an empty target: scored
        # IMPOSSIBLE (`ctc_scores`), never a KeyError in the middle of a request.
        encoded = [
            encode_word(w, spec.alphabet) if letters.issuperset(w) else [] for w in lexicon.words
        ]
        lengths = np.array([len(t) for t in encoded], dtype=np.int64)
        padded = np.zeros((len(encoded), max(1, int(lengths.max(initial=1)))), dtype=np.int64)
        for row, target in enumerate(encoded):
            padded[row, : len(target)] = target
        return cls(padded, lengths, _letter_bins(padded, lengths))


def _letter_bins(padded: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    width = padded.shape[1]
    pos = np.arange(width)[None, :] / np.maximum(lengths[:, None] - 1, 1)
    pos = np.where(lengths[:, None] == 1, 0.5, pos)
    bins = np.minimum((pos * LETTER_BINS).astype(np.int64), LETTER_BINS - 1)
    out = padded * LETTER_BINS + bins
    out[np.arange(width)[None, :] >= lengths[:, None]] = 0
    return out


class LearnedDecoder:
    """Model + lexicon + template shortlist -> top-k words with scores."""

    def __init__(
        self,
        model: SwipeModel,
        spec: FeatureSpec,
        lexicon: Lexicon,
        template_params: TemplateParams | None = None,
        fusion: FusionWeights | None = None,
    ) -> None:
        self.model = model.eval()
        self.spec = spec
        self.fusion = fusion or FusionWeights()
        self.device = next(model.parameters()).device  # inputs go where the model is
        self.template = TemplateDecoder(lexicon, template_params)
        self._targets: LexiconTargets | None = None
        # The word-pair prior `ranked` adds when it is told the word before the cursor.
        self.context: ContextPrior | None = None

    def with_model(self, model: SwipeModel) -> LearnedDecoder:
        """This decoder over another model's weights. The lexicon's template banks and CTC
        targets (seconds to build for 100,000 words) are shared, not rebuilt: a node decodes
        with each round's new weights. So is the lexicon: words added to one reach both."""
        other = self._sharing()
        other.model = model.eval()
        other.device = next(model.parameters()).device
        return other

    def with_features(self, spec: FeatureSpec) -> LearnedDecoder:
        """This decoder reading traces through `spec` (the same alphabet; frames laid out
        another way, a second view for a model trained on both), sharing the rest."""
        if spec.alphabet != self.spec.alphabet:
            raise ValueError("a decoder's features keep its alphabet: its CTC targets use it")
        other = self._sharing()
        other.spec = spec
        return other

    def _sharing(self) -> LearnedDecoder:
        """A copy sharing this decoder's lexicon, template banks and CTC targets (built now
        if not yet, so that both use one set)."""
        other = copy.copy(self)
        other._targets = self._lexicon_targets()
        return other

    @property
    def lexicon(self) -> Lexicon:
        return self.template.lexicon

    @lexicon.setter
    def lexicon(self, lexicon: Lexicon) -> None:
        self.template.lexicon = lexicon
        self._targets = None

    def add_words(self, words: dict[str, float] | list[str]) -> None:
        """Make new words decodable at once: no retraining, only new templates."""
        self.lexicon = self.lexicon.with_words(words)

    def frame_log_probs(self, swipes: list[tuple[np.ndarray, Keyboard]]) -> list[torch.Tensor]:
        """Per-frame log-probabilities (frames, classes) for each (points, keyboard)."""
        return self.log_probs_of_features([swipe_features(p, kb, self.spec) for p, kb in swipes])

    @torch.inference_mode()
    def log_probs_of_features(self, features: list[np.ndarray]) -> list[torch.Tensor]:
        """`frame_log_probs` of features already computed with `self.spec` (a server computes
        them as requests arrive, off the thread that runs the model)."""
        # Padded in numpy: one torch op per step would re-take the GIL (see serving_module).
        lengths = np.array([len(f) for f in features], dtype=np.int64)
        padded = np.zeros((len(features), int(lengths.max()), features[0].shape[1]), np.float32)
        for row, f in enumerate(features):
            padded[row, : len(f)] = f
        x = torch.from_numpy(padded).to(self.device)
        logp, out_len = self.model(x, torch.from_numpy(lengths).to(self.device))
        frames = logp.float().cpu().numpy()  # sliced in numpy: no torch op per swipe
        return [torch.from_numpy(frames[i, :n]) for i, n in enumerate(out_len.tolist())]

    def shortlist(self, points: np.ndarray, keyboard: Keyboard) -> Shortlist:
        """The words worth CTC-scoring, with their template and prior evidence.

        It needs only the trace, not the model's output, so a server can build it while the
        model runs (serve/services/predictor.py does).
        """
        idx, tpl, prior = self.template.score_candidates(points, keyboard)
        m = min(max(self.fusion.wide, self.fusion.shortlist), len(idx))
        if m < len(idx):
            keep = np.argpartition(-(tpl + self.template.params.prior_weight * prior), m - 1)[:m]
            idx, tpl, prior = idx[keep], tpl[keep], prior[keep]
        return Shortlist(idx, tpl, prior)

    def candidate_scores(
        self,
        points: np.ndarray,
        keyboard: Keyboard,
        logp: torch.Tensor,
        shortlist: Shortlist | None = None,
    ) -> CandidateScores:
        s = shortlist if shortlist is not None else self.shortlist(points, keyboard)
        s = self._model_cut(s, logp)
        idx = s.lexicon_index
        return CandidateScores(
            idx,
            self.ctc_scores(logp, idx),
            s.template,
            s.prior,
            self.target_lengths(idx),
        )

    def _model_cut(self, s: Shortlist, logp: torch.Tensor) -> Shortlist:
        """The `shortlist` best of the template's `wide` candidates, the model's positional
        letter score joining template and prior (FusionWeights)."""
        if len(s.lexicon_index) <= self.fusion.shortlist:
            return s
        letters = self.letter_scores(logp, s.lexicon_index) if self.fusion.letters else 0.0
        keep = model_cut(self.fusion, s.template, s.prior, letters)
        return Shortlist(s.lexicon_index[keep], s.template[keep], s.prior[keep])

    def letter_scores(self, logp: torch.Tensor, idx: np.ndarray) -> np.ndarray:
        """Mean over a word's letters of the best log-probability of that letter near where it
        should be along the trace: order-aware, alignment-free, one gather per candidate."""
        frames = logp.numpy() if isinstance(logp, torch.Tensor) else np.asarray(logp)
        n = len(frames)
        table = np.empty((frames.shape[1], LETTER_BINS))
        for b in range(LETTER_BINS):  # overlapping windows: a letter may be early or late
            lo = int(np.floor(max(0.0, (b - 0.75) / LETTER_BINS) * n))
            hi = int(np.ceil(min(1.0, (b + 1.75) / LETTER_BINS) * n))
            table[:, b] = frames[lo : max(hi, lo + 1)].max(axis=0)
        targets = self._lexicon_targets()
        gathered = table.reshape(-1)[targets.letter_bins[idx]]
        lengths = targets.lengths[idx]
        mask = np.arange(gathered.shape[1])[None, :] < lengths[:, None]
        return np.where(mask, gathered, 0.0).sum(1) / np.maximum(lengths, 1)

    def target_lengths(self, idx: np.ndarray) -> np.ndarray:
        """Letters in each lexicon word `idx`'s CTC target (0: a word the model cannot spell)."""
        return self._lexicon_targets().lengths[idx].astype(np.float64)

    def ctc_scores(self, logp: torch.Tensor, idx: np.ndarray) -> np.ndarray:
        """CTC log-likelihood of each lexicon word `idx` under one swipe's frames."""
        if len(idx) == 0:
            return np.zeros(0)
        targets = self._lexicon_targets()
        nll = _ctc_nll()(
            logp, torch.from_numpy(targets.padded[idx]), torch.from_numpy(targets.lengths[idx])
        )
        ll = -nll.numpy().astype(np.float64)
        ll[~np.isfinite(ll) | (targets.lengths[idx] == 0)] = IMPOSSIBLE
        return ll

    def _lexicon_targets(self) -> LexiconTargets:
        targets = self._targets  # one read: a lexicon change may reset it meanwhile
        if targets is None:
            targets = self._targets = LexiconTargets.encode(self.lexicon, self.spec)
        return targets

    def batched_log_probs(
        self, swipes: Sequence[Swipe], batch_size: int = 64
    ) -> Iterator[tuple[Swipe, torch.Tensor]]:
        """Each swipe with its frame log-probabilities, the model run on `batch_size` at a time
        (what every pass over many swipes needs before its per-swipe work)."""
        for start in range(0, len(swipes), batch_size):
            chunk = swipes[start : start + batch_size]
            yield from zip(chunk, self.frame_log_probs([(s.points, s.keyboard) for s in chunk]))

    def score_many(self, swipes: list[Swipe], batch_size: int = 64) -> list[CandidateScores]:
        return [
            self.candidate_scores(s.points, s.keyboard, lp)
            for s, lp in self.batched_log_probs(swipes, batch_size)
        ]

    def ranked(
        self, scores: CandidateScores, k: int, previous: str | None = None
    ) -> list[tuple[str, float]]:
        """The k best (word, fused score) pairs of one swipe's evidence, best first; with the
        word before the cursor (`previous`) and a `context` prior, its bonus is added."""
        fused = scores.combined(self.fusion)
        if previous is not None and self.context is not None:
            words = self.lexicon.words
            fused = fused + self.context.bonus(previous, [words[i] for i in scores.lexicon_index])
        return top_k_words(self.lexicon, scores.lexicon_index, fused, k)

    def decode(
        self, points: np.ndarray, keyboard: Keyboard, k: int = 4, previous: str | None = None
    ) -> list[tuple[str, float]]:
        """Top-k (word, score) for one trace, best first (`previous`: see `ranked`)."""
        logp = self.frame_log_probs([(points, keyboard)])[0]
        return self.ranked(self.candidate_scores(points, keyboard, logp), k, previous)

    def decode_many(self, swipes: list[Swipe], k: int = 4) -> list[list[tuple[str, float]]]:
        return [self.ranked(s, k) for s in self.score_many(swipes)]
