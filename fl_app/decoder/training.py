"""The one training loop: the ClientApp, the centralized baseline and on-device
personalization all call `train`. CTC loss over collapsed letter sequences, AdamW, optional
FedProx proximal term, progress callback and cooperative cancellation, seeded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from fl_app.decoder.augment import AugmentConfig, augment_points
from fl_app.decoder.features import (
    FeatureSpec,
    encode_word,
    frame_count,
    other_view,
    swipe_features,
)
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.swipe import Swipe

BUDGET_PROBE_STEPS = 30  # under a time budget, the run's length is re-fitted this often


@dataclass
class TrainConfig:
    epochs: float = 1.0  # may be fractional: 0.5 = half a pass over the data
    steps: int | None = None  # a fixed number of optimizer steps instead of `epochs`
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    mu: float = 0.0  # FedProx proximal weight: mu/2 * ||w - w_start||^2
    warmup_steps: int = 0
    cosine: bool = False  # decay the learning rate to 10% over the run
    ema: float = 0.0  # decay of a moving average of the weights the run ends with (0: none)
    seed: int = 0
    max_seconds: float | None = None  # time budget: the schedule shrinks to fit it

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    steps: int
    examples: int
    loss: float  # mean CTC loss over the last epoch's batches
    seconds: float
    cancelled: bool
    skipped_examples: int = 0  # examples with non-finite features, never trained on
    skipped_steps: int = 0  # steps whose loss or gradient was not finite: no update


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float


class TrainingData(Protocol):
    """What the training loop needs of a dataset: its size, frames per example (to batch
    similar lengths together) and the examples' features and CTC targets."""

    lengths: np.ndarray

    def __len__(self) -> int: ...

    def examples(self, idx: Sequence[int]) -> tuple[list[np.ndarray], list[list[int]]]: ...


class SwipeDataset:
    """Features and CTC targets of labelled swipes, computed once."""

    def __init__(self, features: list[np.ndarray], targets: list[list[int]]) -> None:
        self.features = features
        self.targets = targets
        self.lengths = np.array([len(f) for f in features], dtype=np.int64)

    @classmethod
    def from_swipes(
        cls, swipes: Sequence[Swipe], spec: FeatureSpec, views: ViewMix | None = None
    ) -> SwipeDataset:
        """`views`: each swipe's frames laid out one way or the other once, for the run."""
        feats, targets = [], []
        for s in swipes:
            if s.word is None or not all(ch in spec.alphabet for ch in s.word):
                continue
            f = swipe_features(s.points, s.keyboard, views.pick() if views else spec)
            if not np.isfinite(f).all():  # a degenerate row an older version stored
                continue
            feats.append(f)
            targets.append(encode_word(s.word, spec.alphabet))
        return cls(feats, targets)

    def __len__(self) -> int:
        return len(self.features)

    def examples(self, idx: Sequence[int]) -> tuple[list[np.ndarray], list[list[int]]]:
        return [self.features[i] for i in idx], [self.targets[i] for i in idx]

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return collate(*self.examples(idx))


class ViewMix:
    """The model's own frame layout for its examples but a share of them, which get the other
    one (frames along the path for a model whose frames are uniform in time, and the reverse):
    one network that reads both views of a trace, which a decoder may score both ways and
    average (`LearnedDecoder.with_features`). Measured in docs/pretraining.md: reading a
    swipe both ways does not give what two separately trained models of the two views give.
    Batches are still bucketed by the model's own view's frame counts: the other view's rows
    only take more padding."""

    def __init__(self, spec: FeatureSpec, other_share: float, seed: int = 0) -> None:
        if not 0.0 <= other_share <= 1.0:
            raise ValueError(f"other_view_share must lie in [0, 1], not {other_share}")
        self.spec, self.other_share = spec, other_share
        self.other = replace(spec, resample=other_view(spec.resample))
        self.rng = np.random.default_rng([seed, 0x5F1E])

    def pick(self) -> FeatureSpec:
        return self.other if self.rng.random() < self.other_share else self.spec


class AugmentedSwipes:
    """Labelled swipes whose features are computed per batch from a fresh augmentation
    (fl_app/decoder/augment.py): a few thousand real swipes never look the same twice.
    `views`: each draw's frames laid out one way or the other afresh."""

    def __init__(
        self,
        swipes: Sequence[Swipe],
        spec: FeatureSpec,
        augment: AugmentConfig,
        seed: int = 0,
        views: ViewMix | None = None,
    ) -> None:
        letters = set(spec.alphabet)
        self.swipes = [s for s in swipes if s.word is not None and letters.issuperset(s.word)]
        self.targets = [encode_word(str(s.word), spec.alphabet) for s in self.swipes]
        self.spec, self.augment, self.views = spec, augment, views
        self.rng = np.random.default_rng(seed)
        self.lengths = np.array([frame_count(s.points, s.keyboard, spec) for s in self.swipes])

    def __len__(self) -> int:
        return len(self.swipes)

    def examples(self, idx: Sequence[int]) -> tuple[list[np.ndarray], list[list[int]]]:
        feats = []
        for i in idx:
            s = self.swipes[i]
            points = augment_points(s.points, s.keyboard, self.augment, self.rng)
            spec = self.views.pick() if self.views else self.spec
            feats.append(swipe_features(points, s.keyboard, spec))
        return feats, [self.targets[i] for i in idx]


class MixedDataset:
    """Several datasets as one, part k seen `repeats[k]` times per epoch (oversampling a small
    real set beside a large synthetic one)."""

    def __init__(self, parts: Sequence[TrainingData], repeats: Sequence[int]) -> None:
        if len(parts) != len(repeats) or any(r < 0 for r in repeats):
            raise ValueError("one non-negative repeat count per part")
        self.parts = list(parts)
        pairs = [
            np.stack([np.full(len(p) * r, k), np.tile(np.arange(len(p)), r)], axis=1)
            for k, (p, r) in enumerate(zip(parts, repeats))
        ]
        self.index = np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), int)
        self.lengths = np.array([self.parts[k].lengths[i] for k, i in self.index], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def examples(self, idx: Sequence[int]) -> tuple[list[np.ndarray], list[list[int]]]:
        feats: list[np.ndarray] = []
        targets: list[list[int]] = []
        for j in idx:
            k, i = self.index[j]
            f, t = self.parts[int(k)].examples([int(i)])
            feats += f
            targets += t
        return feats, targets


def collate(
    features: Sequence[np.ndarray], targets: Sequence[list[int]]
) -> tuple[torch.Tensor, ...]:
    """Padded features, their lengths, the concatenated CTC targets and their lengths."""
    feats = [torch.from_numpy(f) for f in features]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([len(f) for f in feats])
    target_len = torch.tensor([len(t) for t in targets])
    flat = torch.tensor([c for t in targets for c in t], dtype=torch.long)
    return x, lengths, flat, target_len


def finite_examples(
    features: Sequence[np.ndarray], targets: Sequence[list[int]]
) -> tuple[list[np.ndarray], list[list[int]]]:
    """The examples whose features are all finite: one infinite feature makes a NaN loss, and
    one step on a NaN loss makes every weight NaN."""
    keep = [i for i, f in enumerate(features) if np.isfinite(f).all()]
    return [features[i] for i in keep], [targets[i] for i in keep]


def ctc_batch_loss(
    model: SwipeModel, batch: tuple[torch.Tensor, ...], device: torch.device
) -> torch.Tensor:
    x, lengths, flat, target_len = (t.to(device) for t in batch)
    logp, out_len = model(x, lengths)
    return F.ctc_loss(logp.transpose(0, 1), flat, out_len, target_len, blank=0, zero_infinity=True)


def train(
    model: SwipeModel,
    data: TrainingData,
    config: TrainConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train `model` in place from its current weights."""
    device = device or next(model.parameters()).device
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device).train()
    proximal = ProximalTerm(model, config.mu)
    average = WeightAverage(model, config.ema) if config.ema else None
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = max(1, round(steps_per_epoch * config.epochs)) if n else 0
    if config.steps is not None and n:
        total = int(config.steps)
    plan = {"total": total}  # the schedule reads it: a time budget may shorten the run
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_schedule(config, plan))
    t0 = time.perf_counter()
    losses: list[float] = []
    step, examples, cancelled = 0, 0, False
    skipped_examples, skipped_steps = 0, 0
    batches: list[np.ndarray] = []
    while step < plan["total"]:
        if not batches:
            batches = _length_bucketed_batches(data, config.batch_size, rng)
            losses = []
        idx = batches.pop()
        if should_stop is not None and should_stop():
            cancelled = True
            break
        feats, targets = finite_examples(*data.examples(idx))
        skipped_examples += len(idx) - len(feats)
        if not feats:  # nothing finite to learn from: the step passes without an update
            step += 1
            continue
        loss = ctc_batch_loss(model, collate(feats, targets), device)
        loss = proximal.add_to(loss, model)
        if apply_gradients(model, opt, loss, config.grad_clip):
            sched.step()
            losses.append(float(loss.detach()))
            if average is not None:
                average.update(model)
        else:
            skipped_steps += 1
        step += 1
        examples += len(feats)
        if config.max_seconds and step % BUDGET_PROBE_STEPS == 0:
            per_step = (time.perf_counter() - t0) / step
            plan["total"] = min(total, max(step, int(config.max_seconds / per_step)))
        if progress is not None:
            progress(Progress(step, plan["total"], losses[-1] if losses else float("nan")))
    if average is not None:
        average.copy_to(model)
    model.eval()
    return TrainResult(
        steps=step,
        examples=examples,
        loss=float(np.mean(losses)) if losses else float("nan"),
        seconds=time.perf_counter() - t0,
        cancelled=cancelled,
        skipped_examples=skipped_examples,
        skipped_steps=skipped_steps,
    )


def check_ema(decay: float) -> float:
    """A weight average's decay, refused outside [0, 1) (0: the run's last step, no average;
    1 would never move from the starting weights)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema (a weight average's decay) must be within [0, 1), got {decay}")
    return decay


class WeightAverage:
    """An exponential moving average of a model's weights over its optimizer steps (Polyak
    averaging), which the run ends with instead of its last step.

    The last steps of a run wander around a minimum at the learning rate's scale; their
    average sits nearer its centre, the part of the weights all training people agree on
    rather than the last batches' (an ensemble of one run's recent past, at no serving cost).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = check_ema(decay)
        self.shadow = {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if value.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        state = model.state_dict()
        for name, shadow in self.shadow.items():
            shadow.lerp_(state[name], 1.0 - self.decay)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow, strict=False)


class ProximalTerm:
    """FedProx's mu/2 * ||w - w_start||^2, from the weights `model` has now (a round's start);
    with mu = 0 it adds nothing and keeps no copy."""

    def __init__(self, model: torch.nn.Module, mu: float) -> None:
        self.mu = mu
        self.start = [p.detach().clone() for p in model.parameters()] if mu > 0 else None

    def add_to(self, loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        if self.start is None:
            return loss
        drift = sum(((p - w0) ** 2).sum() for p, w0 in zip(model.parameters(), self.start))
        return loss + 0.5 * self.mu * drift


def apply_gradients(
    model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float
) -> bool:
    """Backward, clip and step; whether the step was taken. A non-finite loss or gradient never
    reaches the weights (one step on a NaN makes every weight NaN)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if not torch.isfinite(grad_norm):
        return False
    opt.step()
    return True


def _length_bucketed_batches(
    data: TrainingData, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of shuffled batches of similar-length swipes: padding costs GRU steps."""
    order = rng.permutation(len(data))
    pool = batch_size * 16
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(data.lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def cosine_factor(frac: float) -> float:
    """Cosine decay from 1 to 0.1 as `frac` goes from 0 to 1 (steps of a run, or rounds of a
    federation: `train.lr_schedule=cosine`)."""
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, frac))))


def _lr_schedule(config: TrainConfig, plan: dict[str, int]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        total = plan["total"]
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if not config.cosine or total <= config.warmup_steps:
            return 1.0
        return cosine_factor((step - config.warmup_steps) / max(1, total - config.warmup_steps))

    return factor


@torch.inference_mode()
def mean_loss(
    model: SwipeModel, data: TrainingData, batch_size: int = 128, device: torch.device | None = None
) -> float:
    """Mean CTC loss over a dataset (federated evaluation reports it)."""
    device = device or next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        total += float(ctc_batch_loss(model, collate(*data.examples(idx)), device)) * len(idx)
        count += len(idx)
    return total / count if count else float("nan")
