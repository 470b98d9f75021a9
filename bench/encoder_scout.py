"""A different kind of trace model, scouted through the whole recipe: is the BiGRU what keeps the
base from issue 13's targets?

    python bench/encoder_scout.py [--layers 4] [--heads 4] [--ff 384] [--threads 2]
        [--out FILE] [--save DIR] [recipe overrides: key=value ...]

Every lever measured on today's model (size, steps, people, habits, views, EMA, distillation,
decoding, federation) moved dev within the recipe's seed spread, and the misses are the
model's own preferences ("Where the remaining misses lie", docs/pretraining.md). This runs the
recipe of `python -m fl_app.pretrain` as committed (conf/pretrain.yaml, plus any overrides)
with one change: the two GRU layers that read the whole trace become a pre-norm transformer
encoder (self-attention over the strided convolution's frames, learned positions, padding
masked), the same convolutions before it and the same head after it. CTC stage, word-level
stage and tuning are the recipe's own code. The new model's public-val and dev top-1 are then
paired by swipe with the shipped base's (each model's weights tuned on public-val per lexicon
condition), and its batch-of-one forward is timed in turn with the base's.

A scout, not a product change: the encoder lives in this file, the recipe builds it in place of
`SwipeModel` for this run only, and no checkpoint the product reads is written (`--save` keeps
the tensors and the encoder's settings for a later look).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from real_parts import real_bench_parser, val_and_dev
from report_header import report_header, write_report
from safetensors.numpy import load_file, save_file
from torch import nn

from fl_app.base import base_dir
from fl_app.datasets.measure import conditions_named
from fl_app.datasets.real import CITATION
from fl_app.datasets.real_eval import measure_on_real, paired_points
from fl_app.decoder.features import swipe_features
from fl_app.decoder.model import (
    ModelConfig,
    SwipeModel,
    count_parameters,
    strided_convolutions,
    zero_past_end,
)
from fl_app.decoder.spec import DecoderSpec, load_arrays, read_model_dir
from fl_app.federation.config import conf_dir
from fl_app.pretrain import recipe
from fl_app.pretrain.config import PretrainConfig

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "encoder-scout.md"
MAX_POSITIONS = 64  # strided frames: at most 96 / 2 = 48


class TransformerSwipeModel(nn.Module):
    """`SwipeModel`'s convolutions and head around a transformer encoder instead of the GRU:
    the same (batch, frames, features) -> (log-probs, lengths) contract, so the decoder,
    tuning and word-level stage use it unchanged."""

    def __init__(self, config: ModelConfig, layers: int, heads: int, ff: int) -> None:
        super().__init__()
        self.config = config
        c = config.conv_channels
        self.conv = strided_convolutions(config)
        self.position = nn.Parameter(torch.randn(MAX_POSITIONS, c) * 0.02)
        layer = nn.TransformerEncoderLayer(
            c, heads, ff, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(c, config.n_classes)

    output_lengths = staticmethod(SwipeModel.output_lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv[1](self.conv[0](x.transpose(1, 2)))
        h = self.conv[3](self.conv[2](zero_past_end(h, lengths))).transpose(1, 2)
        out_len = self.output_lengths(lengths)
        h = h + self.position[: h.shape[1]]
        frames = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
        padding = frames >= out_len.to(h.device).unsqueeze(1)
        h = self.encoder(h, src_key_padding_mask=padding if h.shape[0] > 1 else None)
        return self.head(self.drop(self.norm(h))).log_softmax(-1), out_len


@contextlib.contextmanager
def recipe_builds_transformer(layers: int, heads: int, ff: int) -> Iterator[None]:
    """While open, `DecoderSpec.build_model` (what the recipe's CTC stage calls) builds the
    transformer variant of the spec's model."""
    original = DecoderSpec.build_model

    def build(spec: DecoderSpec, seed: int = 0, device: torch.device | None = None) -> nn.Module:
        torch.manual_seed(seed)
        model = TransformerSwipeModel(spec.model_config, layers, heads, ff)
        return model.to(device or torch.device("cpu"))

    DecoderSpec.build_model = build  # type: ignore[method-assign]
    try:
        yield
    finally:
        DecoderSpec.build_model = original  # type: ignore[method-assign]


def load_scout(directory: Path, spec: DecoderSpec) -> TransformerSwipeModel:
    """A scout `--save` wrote, as an eval model reading `spec`'s frames (the recipe's spec:
    the encoder settings come from the folder's scout.json, the tensors from safetensors)."""
    encoder = json.loads((directory / "scout.json").read_text())["encoder"]
    model = TransformerSwipeModel(spec.model_config, **encoder)
    load_arrays(model, load_file(str(directory / "model.safetensors")))
    return model.eval()


def recipe_config(overrides: list[str]) -> PretrainConfig:
    """conf/pretrain.yaml with `key=value` overrides, typed as `python -m fl_app.pretrain`
    types it (Hydra's own section left out)."""
    raw = OmegaConf.load(conf_dir() / "pretrain.yaml")
    raw.pop("hydra", None)
    merged = OmegaConf.merge(
        OmegaConf.structured(PretrainConfig), raw, OmegaConf.from_dotlist(overrides)
    )
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def forward_ms(models: dict[str, nn.Module], features: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Batch-of-one forward times (ms) per model, the models taking turns on each swipe."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for i, f in enumerate(features):
            x, n = torch.from_numpy(f).unsqueeze(0), torch.tensor([len(f)])
            for name, model in models.items():
                t = time.perf_counter()
                model(x, n)
                if i >= 20:  # warm-up
                    times[name].append((time.perf_counter() - t) * 1e3)
    return {name: np.array(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = real_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=384, help="feed-forward width")
    parser.add_argument("--save", type=Path, help="write the tensors and settings here")
    parser.add_argument("overrides", nargs="*", help="recipe settings, key=value")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = recipe_config([*args.overrides, f"train.threads={args.threads}", "evaluate_dev=false"])
    if cfg.ctc_stage_from or cfg.ctc_stage_out or cfg.discriminative.teachers:
        parser.error("the scout trains its own CTC stage and takes no teachers")
    t0 = time.perf_counter()
    with recipe_builds_transformer(args.layers, args.heads, args.ff):
        out = recipe.run(cfg, log=lambda m: print(m, flush=True))
    spec, scout = out["spec"], out["model"].eval()
    encoder = {"layers": args.layers, "heads": args.heads, "ff": args.ff}
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        save_file(out["tensors"], str(args.save / "model.safetensors"))  # the recipe's arrays
        record = {"encoder": encoder, "manifest": out["manifest"]}
        (args.save / "scout.json").write_text(json.dumps(record, indent=1, default=str))
    base_spec, base, base_manifest = read_model_dir(base_dir("en"))

    val, dev = val_and_dev(args.limit)
    conditions = conditions_named("10k+words,100k")
    models = {"shipped base": (base_spec, base), "transformer scout": (spec, scout)}
    figures = measure_on_real(models, dev, val, conditions, template=False)
    users = [r.user for r in dev]
    timed = forward_ms(
        {"shipped base": base, "transformer scout": scout},
        [swipe_features(r.swipe.points, r.swipe.keyboard, spec.features) for r in dev[:520]],
    )
    wall = time.perf_counter() - t0

    train = out["manifest"]["train"]
    setup = (
        f"; the recipe's settings: {json.dumps(asdict(cfg)['model'])}, "
        f"train.steps {cfg.train.steps}, discriminative.steps {cfg.discriminative.steps}"
    )
    lines = report_header(
        "A transformer encoder through the recipe", "encoder_scout.py", setup, argv=argv
    )
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Encoder: {args.layers} pre-norm layers, {args.heads} heads, feed-forward "
        f"{args.ff}, width {spec.conv_channels}: {count_parameters(scout):,} parameters "
        f"against the base's {count_parameters(base):,}. CTC stage {train['steps']} steps, "
        f"final loss {train['final_loss']:.4f} (the base's "
        f"{base_manifest['train']['final_loss']:.4f}), {train['seconds']['train'] / 60:.0f} "
        f"min on {args.threads} threads; the whole run {wall / 60:.0f} min.",
        "",
        f"{len(dev):,} dev swipes of {len(set(users))} users; weights tuned on {len(val):,} "
        f"public-val swipes per model and condition.",
        "",
        "| lexicon | model | public-val top-1 | dev top-1 | dev top-4 | dev vs base (points) |",
        "|---|---|---:|---:|---:|---|",
    ]
    hits = {(f.condition, f.decoder): f.hits for f in figures}
    for f in figures:
        diff = ""
        if f.decoder != "shipped base":
            diff = paired_points(users, f.hits, hits[(f.condition, "shipped base")])
        lines.append(
            f"| {f.condition} | {f.decoder} | {f.tuned['val_top1']:.3f} | "
            f"{f.metrics['top1']:.3f} | {f.metrics['top4']:.3f} | {diff} |"
        )
    lines += [
        "",
        "Batch-of-one forward (ms; the two models in turn on the same "
        f"{len(next(iter(timed.values())))} dev swipes, {torch.get_num_threads()} threads):",
        "",
        "| model | p50 | p99 |",
        "|---|---:|---:|",
        *(
            f"| {name} | {np.percentile(t, 50):.2f} | {np.percentile(t, 99):.2f} |"
            for name, t in timed.items()
        ),
        "",
        CITATION,
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0 if all(math.isfinite(f.metrics["top1"]) for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
