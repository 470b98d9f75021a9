"""The one training loop: the ClientApp, the centralized baseline and on-device
personalization all call `train`. CTC loss over collapsed letter sequences, AdamW, optional
FedProx proximal term, progress callback and cooperative cancellation, seeded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fl_app.decoder.features import FeatureSpec, encode_word, swipe_features
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.swipe import Swipe

BUDGET_PROBE_STEPS = 30  # under a time budget, the run's length is re-fitted this often


@dataclass
class TrainConfig:
    epochs: float = 1.0  # may be fractional: 0.5 = half a pass over the data
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    mu: float = 0.0  # FedProx proximal weight: mu/2 * ||w - w_start||^2
    warmup_steps: int = 0
    cosine: bool = False  # decay the learning rate to 10% over the run
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


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float


class SwipeDataset:
    """Features and CTC targets of labelled swipes, computed once."""

    def __init__(self, features: list[np.ndarray], targets: list[list[int]]) -> None:
        self.features = features
        self.targets = targets

    @classmethod
    def from_swipes(cls, swipes: Sequence[Swipe], spec: FeatureSpec) -> SwipeDataset:
        feats, targets = [], []
        for s in swipes:
            if s.word is None or not all(ch in spec.alphabet for ch in s.word):
                continue
            feats.append(swipe_features(s.points, s.keyboard, spec))
            targets.append(encode_word(s.word, spec.alphabet))
        return cls(feats, targets)

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
        feats = [torch.from_numpy(self.features[i]) for i in idx]
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        lengths = torch.tensor([len(f) for f in feats])
        target_len = torch.tensor([len(self.targets[i]) for i in idx])
        flat = torch.tensor([c for i in idx for c in self.targets[i]], dtype=torch.long)
        return x, lengths, flat, target_len


def ctc_batch_loss(
    model: SwipeModel, batch: tuple[torch.Tensor, ...], device: torch.device
) -> torch.Tensor:
    x, lengths, flat, target_len = (t.to(device) for t in batch)
    logp, out_len = model(x, lengths)
    return F.ctc_loss(logp.transpose(0, 1), flat, out_len, target_len, blank=0, zero_infinity=True)


def train(
    model: SwipeModel,
    data: SwipeDataset,
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
    start_weights = [p.detach().clone() for p in model.parameters()] if config.mu > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = max(1, round(steps_per_epoch * config.epochs)) if n else 0
    plan = {"total": total}  # the schedule reads it: a time budget may shorten the run
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_schedule(config, plan))
    t0 = time.perf_counter()
    losses: list[float] = []
    step, examples, cancelled = 0, 0, False
    batches: list[np.ndarray] = []
    while step < plan["total"]:
        if not batches:
            batches = _length_bucketed_batches(data, config.batch_size, rng)
            losses = []
        idx = batches.pop()
        if should_stop is not None and should_stop():
            cancelled = True
            break
        loss = ctc_batch_loss(model, data.batch(idx), device)
        if start_weights is not None:
            prox = sum(((p - w0) ** 2).sum() for p, w0 in zip(model.parameters(), start_weights))
            loss = loss + 0.5 * config.mu * prox
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        step += 1
        examples += len(idx)
        losses.append(float(loss.detach()))
        if config.max_seconds and step % BUDGET_PROBE_STEPS == 0:
            per_step = (time.perf_counter() - t0) / step
            plan["total"] = min(total, max(step, int(config.max_seconds / per_step)))
        if progress is not None:
            progress(Progress(step, plan["total"], losses[-1]))
    model.eval()
    return TrainResult(
        steps=step,
        examples=examples,
        loss=float(np.mean(losses)) if losses else float("nan"),
        seconds=time.perf_counter() - t0,
        cancelled=cancelled,
    )


def _length_bucketed_batches(
    data: SwipeDataset, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of shuffled batches of similar-length swipes: padding costs GRU steps."""
    order = rng.permutation(len(data))
    pool = batch_size * 16
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort([len(data.features[i]) for i in chunk], kind="stable")]
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
    model: SwipeModel, data: SwipeDataset, batch_size: int = 128, device: torch.device | None = None
) -> float:
    """Mean CTC loss over a dataset (federated evaluation reports it)."""
    device = device or next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        total += float(ctc_batch_loss(model, data.batch(idx), device)) * len(idx)
        count += len(idx)
    return total / count if count else float("nan")
