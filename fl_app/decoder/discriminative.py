"""Word-level discriminative fine-tuning: teach the model the choices the decoder gets wrong.

CTC training raises the likelihood of the right letter sequence, but decoding asks something
else: among the few words the template shortlists, does the right one outscore the others once
template, prior and length bonus are added (`CandidateScores.combined`)? Most of the base's
misses on new people are such close calls inside the shortlist. So, after CTC training, the
decoder mines each training swipe's strongest competitors, and the model is fine-tuned on a
softmax over the truth and those competitors, each scored as decoding scores it: its CTC
log-likelihood (which the model moves) plus its fixed template, prior and length evidence (a
speech recogniser's MMI sequence training, with the decoder's own shortlist as the lattice).
The CTC loss of the truth stays in the objective, so the letter posteriors keep their meaning.

With `teachers` (other trained models, each reading the trace through its own features), the
target of that softmax is part the truth and part the teachers' own choice among the same
candidates: their CTC log-likelihoods averaged, plus the same fixed evidence (an ensemble's
decision, distilled into one network so that serving it costs one network's work). Measured
and not shipped: on public-val it costs 0.1 to 0.5 points against the truth alone
(`bench/word_level_teachers.py`, docs/pretraining.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fl_app.decoder.augment import AugmentConfig, augment_points
from fl_app.decoder.features import FeatureSpec, encode_word, swipe_features
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.ranking import IMPOSSIBLE, LearnedDecoder
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.training import (
    Progress,
    ProximalTerm,
    TrainConfig,
    apply_gradients,
    collate,
    cosine_factor,
)


@dataclass
class DiscriminativeConfig:
    steps: int = 2000  # 0: no discriminative stage
    batch_size: int = 32
    candidates: int = 16  # the truth and its 15 strongest competitors
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    word_weight: float = 3.0  # the word-level loss beside the truth's CTC loss
    real_share: float = 0.5  # of each batch, when there are real swipes
    synthetic_users: int = 400  # fresh synthetic users mined for the stage
    synthetic_seed: int = 7
    mu: float = 0.0  # FedProx proximal weight (a federated round's word-level training)
    # checkpoint folders of trained models whose averaged choice among the candidates is
    # part of the target (none: the truth alone), and that part's weight
    teachers: list[str] = field(default_factory=list)
    teacher_share: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WordChoice:
    """One training swipe as a decision: the truth (first) and its competitors, each with its
    CTC target and the fixed part of its fused score."""

    swipe: Swipe
    words: list[str]
    targets: list[list[int]]
    offsets: np.ndarray  # template, prior and length bonus, weighted as decoding weighs them


def mine_choices(
    decoder: LearnedDecoder, swipes: Sequence[Swipe], candidates: int
) -> list[WordChoice]:
    """Each swipe's truth and its `candidates - 1` best-ranked competitors under `decoder`
    (its shortlist, cut and weights). Swipes whose word the shortlist misses are left out:
    no choice among shortlisted words can make them right."""
    lexicon, alphabet = decoder.lexicon, decoder.spec.alphabet
    choices = []
    for swipe, scores in zip(swipes, decoder.score_many(list(swipes))):
        if swipe.word is None or swipe.word not in lexicon:
            continue
        hit = np.nonzero(scores.lexicon_index == lexicon.index(swipe.word))[0]
        if len(hit) == 0:
            continue
        ranked = np.argsort(-scores.combined(decoder.fusion), kind="stable")
        rivals = [i for i in ranked if i != hit[0] and scores.ctc[i] > IMPOSSIBLE / 10]
        rows = np.array([hit[0], *rivals[: candidates - 1]])
        offsets = scores.subset(rows).fixed_evidence(decoder.fusion)
        words = [lexicon.words[scores.lexicon_index[i]] for i in rows]
        targets = [encode_word(w, alphabet) for w in words]
        choices.append(WordChoice(swipe, words, targets, offsets.astype(np.float32)))
    return choices


@dataclass(frozen=True)
class Teacher:
    """A trained model and the features it reads traces through (its own view of them)."""

    model: SwipeModel
    spec: FeatureSpec


def candidate_scores(
    model: SwipeModel, features: Sequence[np.ndarray], choices: Sequence[WordChoice]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(each swipe's candidates scored as decoding scores them, in a (swipes, candidates) table
    with missing candidates at -inf; the truths' CTC loss per letter, one per swipe)."""
    counts = [len(c.targets) for c in choices]
    x, lengths, flat, target_len = collate(features, [t for c in choices for t in c.targets])
    logp, out_len = model(x, lengths)
    owner = torch.repeat_interleave(torch.arange(len(choices)), torch.tensor(counts))
    frames = out_len[owner]
    nll = F.ctc_loss(
        logp.transpose(0, 1)[:, owner],
        flat,
        frames,
        target_len,
        blank=0,
        reduction="none",
        zero_infinity=True,
    )
    offsets = torch.from_numpy(np.concatenate([c.offsets for c in choices]))
    scores = torch.where(target_len <= frames, offsets - nll, torch.full_like(nll, IMPOSSIBLE))
    slot = torch.cat([torch.arange(k) for k in counts])
    table = torch.full((len(choices), max(counts)), float("-inf"))
    table = table.index_put((owner, slot), scores)
    truth = torch.tensor(np.cumsum([0, *counts[:-1]]))
    return table, nll[truth] / target_len[truth]


def teacher_choice(
    teachers: Sequence[Teacher], points: Sequence[np.ndarray], choices: Sequence[WordChoice]
) -> torch.Tensor:
    """The teachers' probability of each candidate of each swipe (rows as `candidate_scores`):
    a softmax over their CTC log-likelihoods averaged plus the fixed evidence, which is the
    score an ensemble of them decodes with."""
    features: dict[FeatureSpec, list[np.ndarray]] = {}
    with torch.no_grad():
        tables = []
        for t in teachers:
            if t.spec not in features:
                features[t.spec] = [
                    swipe_features(p, c.swipe.keyboard, t.spec) for p, c in zip(points, choices)
                ]
            tables.append(candidate_scores(t.model, features[t.spec], choices)[0])
        return torch.softmax(torch.stack(tables).mean(dim=0), dim=1)


def word_level_losses(
    model: SwipeModel,
    features: Sequence[np.ndarray],
    choices: Sequence[WordChoice],
    soft: torch.Tensor | None = None,
    soft_share: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean CTC loss of the truths per letter, mean cross-entropy of each swipe's candidates
    against its target: the truth, or with `soft` (rows as `candidate_scores`) a mixture that
    gives `soft_share` to `soft` and the rest to the truth)."""
    table, truth_ctc = candidate_scores(model, features, choices)
    logp = torch.log_softmax(table, dim=1)
    target = torch.zeros_like(logp)
    target[:, 0] = 1.0
    if soft is not None and soft_share:
        target = (1.0 - soft_share) * target + soft_share * soft
    # missing candidates: -inf log-probability, zero target
    word = -torch.where(target > 0, target * logp, torch.zeros_like(logp)).sum(dim=1).mean()
    return truth_ctc.mean(), word


def fine_tune(
    model: SwipeModel,
    spec: FeatureSpec,
    real: Sequence[WordChoice],
    synthetic: Sequence[WordChoice],
    config: DiscriminativeConfig,
    augment: AugmentConfig | None,
    seed: int = 0,
    progress: Callable[[int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    teachers: Sequence[Teacher] = (),
) -> dict[str, float]:
    """Fine-tune `model` in place on the word-level objective; real swipes are augmented
    afresh each time they are drawn (as in CTC training; `augment=None`: as stored), synthetic
    ones are used as made. `teachers` score every batch as the student sees it (the same
    augmented trace, each through its own features), and `config.teacher_share` of the target
    is their choice. `should_stop` (checked before each step) ends it early: the returned
    `steps` counts the steps taken."""
    if teachers and not 0.0 <= config.teacher_share <= 1.0:
        raise ValueError(f"teacher_share must be within [0, 1], got {config.teacher_share}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        return warm * cosine_factor(step / max(1, config.steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    share = config.real_share if real and synthetic else float(bool(real))
    proximal = ProximalTerm(model, config.mu)
    model.train()
    t0 = time.perf_counter()
    recent: list[tuple[float, float]] = []
    done = 0
    for step in range(1, config.steps + 1):
        if should_stop is not None and should_stop():
            break
        n_real = int(rng.binomial(config.batch_size, share))
        batch = [real[i] for i in rng.integers(len(real), size=n_real)] if n_real else []
        if config.batch_size > n_real:
            batch += [
                synthetic[i] for i in rng.integers(len(synthetic), size=config.batch_size - n_real)
            ]
        points = [
            augment_points(c.swipe.points, c.swipe.keyboard, augment, rng)
            if k < n_real and augment is not None
            else c.swipe.points
            for k, c in enumerate(batch)
        ]
        features = [swipe_features(p, c.swipe.keyboard, spec) for p, c in zip(points, batch)]
        distil = teachers and config.teacher_share > 0
        soft = teacher_choice(teachers, points, batch) if distil else None
        ctc, word = word_level_losses(model, features, batch, soft, config.teacher_share)
        loss = proximal.add_to(ctc + config.word_weight * word, model)
        apply_gradients(model, opt, loss, config.grad_clip)
        sched.step()
        recent = [*recent[-99:], (float(ctc.detach()), float(word.detach()))]
        done = step
        if progress is not None:
            progress(step, *np.mean(recent, axis=0))
    model.eval()
    ctc_mean, word_mean = np.mean(recent, axis=0) if recent else (float("nan"), float("nan"))
    return {
        "steps": done,
        "ctc_loss": float(ctc_mean),
        "word_loss": float(word_mean),
        "seconds": time.perf_counter() - t0,
    }


def local_word_level_round(
    model: SwipeModel,
    decoder: LearnedDecoder,
    swipes: Sequence[Swipe],
    train: TrainConfig,
    word_weight: float,
    candidates: int,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """A device's round of word-level training (`train.word_weight > 0` in a federation, and the
    sidecar's personalization with `SWIPEFL_TRAIN_WORD_WEIGHT` > 0): the
    global model's own decoder mines this user's close calls, then `train`'s epochs, batch size
    and learning rate run `fine_tune` on them (no warm-up; cosine over the round's steps; FedProx's
    proximal term when the strategy sends one).

    CTC-only local training knows nothing of the shortlist, so federating from a base that had
    the recipe's word-level stage would train that stage's gain away; this keeps the objective
    the base was finished with, and lets the close calls of people the server never sees
    reach the model. `progress` and `should_stop` work as `train()`'s (the loss reported is
    CTC + `word_weight` x the word-level loss)."""
    t0 = time.perf_counter()
    choices = mine_choices(decoder, swipes, candidates)
    if not choices:
        nan = float("nan")
        return {"choices": 0, "steps": 0, "planned_steps": 0, "ctc_loss": nan, "word_loss": nan}
    steps = max(1, round(math.ceil(len(choices) / train.batch_size) * train.epochs))
    config = DiscriminativeConfig(
        steps=steps,
        batch_size=train.batch_size,
        candidates=candidates,
        lr=train.lr,
        warmup_steps=0,
        weight_decay=train.weight_decay,
        grad_clip=train.grad_clip,
        word_weight=word_weight,
        real_share=1.0,
        mu=train.mu,
    )
    report = None
    if progress is not None:

        def report(step: int, ctc: float, word: float) -> None:
            progress(Progress(step, steps, ctc + word_weight * word))

    stats = fine_tune(
        model, decoder.spec, choices, [], config, None, train.seed, report, should_stop
    )
    # seconds: mining too; planned_steps: what `steps` is short of when `should_stop` ended it
    return {
        **stats,
        "choices": len(choices),
        "planned_steps": steps,
        "seconds": time.perf_counter() - t0,
    }
