"""Decoding accuracy: top-1, top-4 and Swipe MRR over labelled swipes.

Swipe MRR weighs the first four suggestions as a keyboard's suggestion bar does:
1 for rank 1, 0.1 for rank 2, 0.09 for rank 3, 0.08 for rank 4."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MRR_WEIGHTS = (1.0, 0.1, 0.09, 0.08)


def rank_of(word: str, suggestions: Sequence[tuple[str, float]] | Sequence[str]) -> int | None:
    """1-based rank of `word` in the suggestions, None when absent."""
    for i, s in enumerate(suggestions):
        if (s[0] if isinstance(s, tuple) else s) == word:
            return i + 1
    return None


def accuracy_metrics(words: Sequence[str], suggestions: Sequence[Sequence]) -> dict[str, float]:
    """top1, top4, mrr (and n) of suggestion lists against the true words."""
    return metrics_from_ranks([rank_of(w, s) for w, s in zip(words, suggestions)])


def metrics_from_ranks(ranks: Sequence[int | None]) -> dict[str, float]:
    """top1, top4, mrr (and n) from each swipe's 1-based rank of its word (None: not shown)."""
    n = len(ranks)
    if n == 0:
        return {"top1": float("nan"), "top4": float("nan"), "mrr": float("nan"), "n": 0}
    top1 = np.mean([r == 1 for r in ranks])
    top4 = np.mean([r is not None and r <= 4 for r in ranks])
    mrr = np.mean([MRR_WEIGHTS[r - 1] if r is not None and r <= 4 else 0.0 for r in ranks])
    return {"top1": float(top1), "top4": float(top4), "mrr": float(mrr), "n": n}


def evaluate_decoder(decoder, swipes: Sequence, k: int = 4) -> dict[str, float]:
    """Decode labelled swipes with anything that has `decode_many` or `decode`."""
    if hasattr(decoder, "decode_many"):
        suggestions = decoder.decode_many(list(swipes), k=k)
    else:
        suggestions = [decoder.decode(s.points, s.keyboard, k=k) for s in swipes]
    return accuracy_metrics([s.word for s in swipes], suggestions)


def score_model(decoder, swipes: Sequence, data=None) -> dict[str, float]:
    """How everybody judges a model on labelled swipes (the server each round, a client on its
    held-out rows, personalization before and after): top1, top4, mrr and n from decoding, plus
    the model's mean CTC loss. `data`: the swipes' `SwipeDataset`, when the caller has it."""
    from fl_app.decoder.training import SwipeDataset, mean_loss

    metrics = evaluate_decoder(decoder, swipes)
    if data is None:
        data = SwipeDataset.from_swipes(list(swipes), decoder.spec)
    metrics["loss"] = mean_loss(decoder.model, data)
    return metrics
