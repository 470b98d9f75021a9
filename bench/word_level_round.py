"""A second word-level round: mine the close calls again with the finished model, train on them.

    python bench/word_level_round.py [--model fl_app/base/en] [--out outputs/pretrain/round2]
        [--synthetic-seed 8] [--seed 1] [--threads 2]

The recipe's word-level stage (docs/pretraining.md, step 4) mines each training swipe's
close calls once, with the decoder as CTC training left it, and fine-tunes on that fixed
shortlist for 2,000 steps. A speech recogniser's sequence training regenerates its lattices
as the model moves; this asks whether the same helps here. From a finished recipe output
(the shipped base unless told), the recipe's own stage (`recipe.word_level_stage`, the
recipe's settings read from the model's manifest) runs once more: the model's own tuned
decoder mines the public-train swipes it trained on and `--synthetic-seed`'s fresh synthetic
users, the model trains on them, and its fusion weights are tuned again on public-val. The
result is written as a recipe output, so `bench/paired_models.py --models MODEL OUT` pairs it
by swipe with the model it started from: the same weights but for the round, so the
difference is the round's alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from paired_models import DEFAULTS  # today's recipe as a manifest records it

from fl_app.base import base_dir
from fl_app.checkpoints.format import write_checkpoint_dir
from fl_app.datasets.real import load_real
from fl_app.decoder.spec import model_arrays, read_model_dir
from fl_app.decoder.tuning import tune_fusion
from fl_app.pretrain.config import PretrainConfig
from fl_app.pretrain.ctc_stage import differing_settings
from fl_app.pretrain.recipe import calibration, real_training_rows, word_level_stage


def recipe_config(manifest: dict, **changes: int) -> PretrainConfig:
    """The recipe settings a model's manifest records (today's defaults where it predates
    one), with `changes` ("section.name": value) applied."""
    merged = OmegaConf.structured(PretrainConfig)
    recorded = [
        (name, value)
        for name, value, _ in differing_settings(manifest["recipe"]["config"], DEFAULTS)
        if value is not None
    ]
    for name, value in [*recorded, *changes.items()]:
        OmegaConf.update(merged, name, value, merge=False)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=base_dir("en"), help="a recipe output")
    p.add_argument("--out", type=Path, default=Path("outputs/pretrain/round2"))
    p.add_argument("--synthetic-seed", type=int, default=8, help="the round's fresh users")
    p.add_argument("--seed", type=int, default=1, help="the round's batches and augmentation")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.out.resolve() == args.model.resolve():
        sys.exit("--out must not be --model: the round writes a new recipe output")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec, model, manifest = read_model_dir(args.model)
    cfg = recipe_config(
        manifest,
        **{"seed": args.seed, "discriminative.synthetic_seed": args.synthetic_seed},
    )
    if not cfg.discriminative.steps:
        sys.exit(f"{args.model}'s recipe has no word-level stage (discriminative.steps=0)")

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {message}", flush=True)

    # The shipped lexicon and the weights tuned for it: mined as the model's own decoder would.
    decoder = spec.build_decoder(model)
    real = real_training_rows(cfg)
    record = word_level_stage(cfg, spec, model, decoder, real, calibration(cfg), ([], []), log)
    val = [r.swipe for r in load_real("public-val")]
    decoder.fusion, val_top1 = tune_fusion(decoder, val)  # the model moved
    log(f"public-val top-1 after the round, shipped lexicon, re-tuned: {val_top1:.3f}")
    spec = replace(spec, fusion=decoder.fusion)
    command = "python bench/word_level_round.py " + " ".join(sys.argv[1:] if argv is None else argv)
    train = dict(manifest.get("train", {}))
    train["word_level_rounds"] = [train.get("word_level"), record]
    train["word_level"] = record
    written = write_checkpoint_dir(
        args.out,
        model_arrays(model),
        {
            "decoder": spec.to_manifest(),
            "lexicon_id": spec.lexicon().lexicon_id,
            "kind": manifest.get("kind", "base"),
            "recipe": {
                "command": command.strip(),
                "config": asdict(cfg),
                "started_from": {"dir": str(args.model), "sha256": manifest["sha256"]},
            },
            "data": manifest.get("data", {}),
            "train": train,
            "citation": manifest.get("citation"),
            "licence_note": manifest.get("licence_note"),
        },
    )
    log(f"wrote {args.out} (sha256 {written['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
