"""Lexicon decoding with the learned model.

The template channels (fl_app/template.py) shortlist plausible lexicon words; the model's
per-frame letter probabilities score each shortlisted word by its CTC likelihood; a weighted
sum with the template score and the frequency prior ranks them. Any letter sequence can be
scored, so words never seen in training and words added to the lexicon later decode too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fl_app.features import FeatureSpec, encode_word, swipe_features
from fl_app.keyboard import Keyboard
from fl_app.lexicon import Lexicon
from fl_app.model import SwipeModel
from fl_app.swipe import Swipe
from fl_app.template import TemplateDecoder, TemplateParams, top_k_words

MAX_K = 8
IMPOSSIBLE = -1e4  # CTC log-likelihood given to words longer than the trace's frames


@dataclass
class FusionWeights:
    """How the learned decoder weighs its evidence; tuned on synthetic tuning users."""

    template: float = 0.3
    prior: float = 0.3
    shortlist: int = 96

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

    def combined(self, fusion: FusionWeights) -> np.ndarray:
        return self.ctc + fusion.template * self.template + fusion.prior * self.prior


class LearnedDecoder:
    """Model + lexicon + template shortlist -> top-k words with scores."""

    def __init__(
        self,
        model: SwipeModel,
        spec: FeatureSpec,
        lexicon: Lexicon,
        template_params: TemplateParams | None = None,
        fusion: FusionWeights | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.model = model.eval()
        self.spec = spec
        self.fusion = fusion or FusionWeights()
        self.device = device or next(model.parameters()).device
        self.template = TemplateDecoder(lexicon, template_params)
        self._targets: dict[int, list[int]] = {}

    @property
    def lexicon(self) -> Lexicon:
        return self.template.lexicon

    @lexicon.setter
    def lexicon(self, lexicon: Lexicon) -> None:
        self.template.lexicon = lexicon
        self._targets.clear()

    def add_words(self, words: dict[str, float] | list[str]) -> None:
        """Make new words decodable at once: no retraining, only new templates."""
        self.lexicon = self.lexicon.with_words(words)

    @torch.inference_mode()
    def frame_log_probs(self, swipes: list[tuple[np.ndarray, Keyboard]]) -> list[torch.Tensor]:
        """Per-frame log-probabilities (frames, classes) for each (points, keyboard)."""
        feats = [torch.from_numpy(swipe_features(p, kb, self.spec)) for p, kb in swipes]
        lengths = torch.tensor([len(f) for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
        logp, out_len = self.model(x, lengths.to(self.device))
        logp = logp.float().cpu()
        return [logp[i, : int(out_len[i])] for i in range(len(feats))]

    def shortlist(self, points: np.ndarray, keyboard: Keyboard) -> Shortlist:
        """The words worth CTC-scoring, with their template and prior evidence.

        It needs only the trace, not the model's output, so a server can build it while the
        model runs (serve/services/predictor.py does).
        """
        idx, tpl, prior = self.template.score_candidates(points, keyboard)
        m = min(self.fusion.shortlist, len(idx))
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
        return CandidateScores(
            s.lexicon_index, self._ctc_scores(logp, s.lexicon_index), s.template, s.prior
        )

    def _ctc_scores(self, logp: torch.Tensor, idx: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros(0)
        targets = [self._target(int(i)) for i in idx]
        target_len = torch.tensor([len(t) for t in targets])
        flat = torch.tensor([c for t in targets for c in t], dtype=torch.long)
        n = len(targets)
        frames = logp.shape[0]
        nll = F.ctc_loss(
            logp[:, None, :].expand(frames, n, logp.shape[1]),
            flat,
            torch.full((n,), frames, dtype=torch.long),
            target_len,
            blank=0,
            reduction="none",
            zero_infinity=False,
        )
        ll = -nll.numpy().astype(np.float64)
        ll[~np.isfinite(ll)] = IMPOSSIBLE
        return ll

    def _target(self, i: int) -> list[int]:
        if i not in self._targets:
            self._targets[i] = encode_word(self.lexicon.words[i], self.spec.alphabet)
        return self._targets[i]

    def score_many(self, swipes: list[Swipe], batch_size: int = 64) -> list[CandidateScores]:
        out: list[CandidateScores] = []
        for start in range(0, len(swipes), batch_size):
            chunk = swipes[start : start + batch_size]
            logps = self.frame_log_probs([(s.points, s.keyboard) for s in chunk])
            out.extend(
                self.candidate_scores(s.points, s.keyboard, lp) for s, lp in zip(chunk, logps)
            )
        return out

    def ranked(self, scores: CandidateScores, k: int) -> list[tuple[str, float]]:
        """The k best (word, fused score) pairs of one swipe's evidence, best first."""
        return top_k_words(self.lexicon, scores.lexicon_index, scores.combined(self.fusion), k)

    def decode(self, points: np.ndarray, keyboard: Keyboard, k: int = 4) -> list[tuple[str, float]]:
        """Top-k (word, score) for one trace, best first."""
        logp = self.frame_log_probs([(points, keyboard)])[0]
        return self.ranked(self.candidate_scores(points, keyboard, logp), k)

    def decode_many(self, swipes: list[Swipe], k: int = 4) -> list[list[tuple[str, float]]]:
        return [self.ranked(s, k) for s in self.score_many(swipes)]
