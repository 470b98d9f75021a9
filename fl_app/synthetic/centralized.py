"""Centralized training and evaluation on synthetic users.

The reference the federation is compared with (bench/federation.py), the core of the
accuracy benchmark (bench/accuracy.py), and a quick end-to-end check of the decoder core:
`python -m fl_app.synthetic.centralized --help`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from fl_app.decoder.evaluation import evaluate_decoder
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.model import count_parameters
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.template import TemplateDecoder
from fl_app.decoder.training import Progress, SwipeDataset, TrainConfig, train
from fl_app.decoder.tuning import tune_fusion, tune_template
from fl_app.synthetic.users import make_users

# Seeds of the disjoint user populations: training, tuning and test users never overlap.
TRAIN_SEED, TUNE_SEED, TEST_SEED, SHIFTED_SEED, UNSEEN_SEED = (
    1,
    2_000_003,
    3_000_017,
    4_000_037,
    5_000_011,
)


@dataclass
class CentralConfig:
    spec: DecoderSpec = field(default_factory=DecoderSpec)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, cosine=True, warmup_steps=100)
    )
    train_users: int = 200
    swipes_per_user: int = 50
    tune_users: int = 50
    test_users: int = 100
    test_swipes_per_user: int = 10
    unseen_word_fraction: float = 0.05  # of the lexicon, kept out of every training user
    time_budget_s: float | None = None  # stop training after this long
    seed: int = 0


def user_swipes(
    n_users: int,
    per_user: int,
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: list[str] | None = None,
) -> list[Swipe]:
    return [
        s
        for u in make_users(n_users, seed, lexicon, regime, words=words)
        for s in u.swipes(per_user)
    ]


def split_unseen_words(
    lexicon: Lexicon, fraction: float, seed: int, protect_top: int = 300
) -> tuple[list[str], list[str]]:
    """(training words, words held out of all training); the most frequent words stay in."""
    rng = np.random.default_rng(seed)
    pool = np.arange(protect_top, len(lexicon))
    unseen = set(rng.choice(pool, size=int(fraction * len(lexicon)), replace=False).tolist())
    seen_words = [w for i, w in enumerate(lexicon.words) if i not in unseen]
    return seen_words, [lexicon.words[i] for i in sorted(unseen)]


@dataclass
class Datasets:
    train: list[Swipe]
    tune: list[Swipe]
    test: list[Swipe]
    shifted: list[Swipe]
    unseen: list[Swipe]


def make_datasets(cfg: CentralConfig, lexicon: Lexicon) -> Datasets:
    seen, unseen = split_unseen_words(lexicon, cfg.unseen_word_fraction, cfg.seed)
    s = cfg.seed
    return Datasets(
        train=user_swipes(
            cfg.train_users, cfg.swipes_per_user, TRAIN_SEED + s, lexicon, words=seen
        ),
        tune=user_swipes(cfg.tune_users, cfg.test_swipes_per_user, TUNE_SEED + s, lexicon),
        test=user_swipes(cfg.test_users, cfg.test_swipes_per_user, TEST_SEED + s, lexicon),
        shifted=user_swipes(
            cfg.test_users, cfg.test_swipes_per_user, SHIFTED_SEED + s, lexicon, "shifted"
        ),
        unseen=user_swipes(
            cfg.test_users, cfg.test_swipes_per_user, UNSEEN_SEED + s, lexicon, words=unseen
        ),
    )


def train_central(
    cfg: CentralConfig, train_swipes: list[Swipe], log=print
) -> tuple[torch.nn.Module, dict]:
    """Train a fresh model on the swipes within the time budget."""
    model = cfg.spec.build_model(seed=cfg.seed)
    t0 = time.perf_counter()
    data = SwipeDataset.from_swipes(train_swipes, cfg.spec.features)
    feat_s = time.perf_counter() - t0

    def report(p: Progress) -> None:
        if p.step % 200 == 0 or p.step == p.total_steps:
            log(
                f"  step {p.step}/{p.total_steps} loss {p.loss:.3f} ({time.perf_counter() - t0:.0f} s)"
            )

    train_cfg = replace(cfg.train, max_seconds=cfg.time_budget_s)
    deadline = None if cfg.time_budget_s is None else t0 + 1.05 * cfg.time_budget_s + 30
    result = train(
        model,
        data,
        train_cfg,
        progress=report,
        should_stop=(lambda: time.perf_counter() > deadline) if deadline else None,
    )
    info = asdict(result) | {"feature_seconds": feat_s, "wall_seconds": time.perf_counter() - t0}
    return model, info


def tuned_decoders(
    cfg: CentralConfig, model: torch.nn.Module, lexicon: Lexicon, tune: list[Swipe]
) -> tuple[TemplateDecoder, LearnedDecoder, dict]:
    """Tune the template baseline, then the learned decoder's fusion weights, on `tune`."""
    template = TemplateDecoder(lexicon, cfg.spec.template)
    params, tpl_acc = tune_template(template, tune)
    template.params = params
    learned = LearnedDecoder(model, cfg.spec.features, lexicon, params, cfg.spec.fusion)
    fusion, fused_acc = tune_fusion(learned, tune)
    learned.fusion = fusion
    return (
        template,
        learned,
        {
            "template": params.to_dict(),
            "fusion": fusion.to_dict(),
            "tune_top1_template": tpl_acc,
            "tune_top1_learned": fused_acc,
        },
    )


def run(cfg: CentralConfig, log=print) -> dict:
    lexicon = cfg.spec.lexicon()
    t0 = time.perf_counter()
    data = make_datasets(cfg, lexicon)
    log(f"generated {len(data.train)} training swipes in {time.perf_counter() - t0:.0f} s")
    model, train_info = train_central(cfg, data.train, log)
    template, learned, tuned = tuned_decoders(cfg, model, lexicon, data.tune)
    results = {"parameters": count_parameters(model), "train": train_info, "tuned": tuned}
    for name in ("test", "shifted", "unseen"):
        swipes = getattr(data, name)
        results[name] = {
            "learned": evaluate_decoder(learned, swipes),
            "template": evaluate_decoder(template, swipes),
        }
    results["spec"] = replace(
        cfg.spec, template=template.params, fusion=learned.fusion
    ).to_manifest()
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-users", type=int, default=100)
    p.add_argument("--swipes-per-user", type=int, default=30)
    p.add_argument("--test-users", type=int, default=40)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lexicon-size", type=int, default=10000)
    p.add_argument("--minutes", type=float, default=None, help="training time budget")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = CentralConfig(
        spec=DecoderSpec(lexicon_size=args.lexicon_size),
        train=TrainConfig(epochs=args.epochs, cosine=True, warmup_steps=50),
        train_users=args.train_users,
        swipes_per_user=args.swipes_per_user,
        tune_users=args.test_users // 2,
        test_users=args.test_users,
        time_budget_s=None if args.minutes is None else args.minutes * 60,
    )
    results = run(cfg)
    for name in ("test", "shifted", "unseen"):
        for kind in ("learned", "template"):
            m = results[name][kind]
            print(
                f"{name:8s} {kind:9s} top1 {m['top1']:.3f} top4 {m['top4']:.3f} mrr {m['mrr']:.3f}"
            )
    print(
        json.dumps(
            {
                "parameters": results["parameters"],
                "train_seconds": round(results["train"]["wall_seconds"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
