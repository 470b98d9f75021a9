"""Levers on the shipped base's decoding, measured on real people: what is left to pull
without a better model.

    python bench/decoding_levers.py [--members DIR ...] [--scouts DIR ...] [--other-view]
        [--lexicon-sizes 200000]

Every lever is chosen on the public-val users and reported on the dev users, paired by user
against the shipped base decoded the same way (95% interval from resampling users):

- *test-time augmentation*: each shortlisted word's CTC log-likelihood averaged over the trace
  and variants of it (shifted 0.12 key, drawn 8% larger or smaller, played 25% slower or
  faster), the way image models average predictions over flips and crops;
- *a capped prior*: the word-frequency prior clipped at a ceiling, so that `the` cannot
  outvote a trace that fits `tba` (most of the close calls the prior flips are the study's
  rare prompts);
- *an ensemble* (`--members`): each shortlisted word's CTC log-likelihood averaged over the
  base and other models of the same recipe (`python -m fl_app.pretrain seed=N out=DIR`, or
  `model.resample=path`), or one CTC pass over their frame probabilities averaged (what a
  single module holding the members would compute; only for members whose frames are laid
  out as the base's). `--scouts DIR` adds transformer models `bench/encoder_scout.py --save
  DIR` kept, after the `--members`: an ensemble of two kinds of network;
- *both views of one model* (`--other-view`): each member also read with its frames laid out
  the other way (along the path for a time model), alone and averaged with its own view: one
  network trained on both (`data.other_view_share`) as a two-view ensemble of itself;
- *a larger lexicon* (`--lexicon-sizes`, needs `pip install wordfreq`): the lexicon as shipped
  grown to N words of wordfreq (scripts/make_lexicon.py's rule), weights re-tuned on public-val.

The first three work on the "10k + evaluated words" condition (the issue's 0.90 target): the
base's shortlist after its own cut (the 96 of 800 template candidates it CTC-scores) is
computed once, and each lever changes only how those candidates are scored; the template,
prior and length-bonus weights are re-tuned on public-val for every lever, and for the
baseline the same way. Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from encoder_scout import load_scout
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import LexiconCondition, paired_points, ranks
from fl_app.decoder.evaluation import metrics_from_ranks
from fl_app.decoder.features import other_view
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, read_model_dir
from fl_app.decoder.tuning import FUSION_TEMPLATE_GRID, LENGTH_BONUS_GRID, PRIOR_GRID, tune_fusion

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "decoding-levers.md"
CONDITION = LexiconCondition(10_000, True)
PARTS = ("public-val", "dev")
SHIFT_KEYS = 0.12
SCALE = 1.08
TEMPO = 1.25
PRIOR_CAPS = (-4.0, -5.0, -6.0, -8.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", nargs="*", type=Path, default=[], help="recipe output folders")
    p.add_argument(
        "--scouts",
        nargs="*",
        type=Path,
        default=[],
        help="transformer scouts (bench/encoder_scout.py --save DIR), members after --members",
    )
    p.add_argument(
        "--other-view",
        action="store_true",
        help="also score each member with its frames laid out the other way (time/path)",
    )
    p.add_argument("--lexicon-sizes", nargs="*", type=int, default=[])
    p.add_argument("--limit", type=int, default=0, help="swipes per part (0: all; a quick check)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.other_view and not (args.members or args.scouts):
        p.error("--other-view reads each member the other way: name them with --members DIR")
    return args


def _shifted(points: np.ndarray, kb: Keyboard, dx: float, dy: float) -> np.ndarray:
    out = points.copy()
    out[:, 0] += dx * kb.key_size[0]
    out[:, 1] += dy * kb.key_size[1]
    return out


def _scaled(points: np.ndarray, kb: Keyboard, factor: float) -> np.ndarray:
    out = points.copy()
    centre = out[:, :2].mean(0)
    out[:, :2] = centre + (out[:, :2] - centre) * factor
    return out


def _tempo(points: np.ndarray, kb: Keyboard, factor: float) -> np.ndarray:
    out = points.copy()
    out[:, 2] *= factor
    return out


Variant = Callable[[np.ndarray, Keyboard], np.ndarray]
VARIANTS: dict[str, Variant] = {
    "up": lambda p, kb: _shifted(p, kb, 0.0, -SHIFT_KEYS),
    "down": lambda p, kb: _shifted(p, kb, 0.0, SHIFT_KEYS),
    "left": lambda p, kb: _shifted(p, kb, -SHIFT_KEYS, 0.0),
    "right": lambda p, kb: _shifted(p, kb, SHIFT_KEYS, 0.0),
    "larger": lambda p, kb: _scaled(p, kb, SCALE),
    "smaller": lambda p, kb: _scaled(p, kb, 1 / SCALE),
    "slower": lambda p, kb: _tempo(p, kb, TEMPO),
    "faster": lambda p, kb: _tempo(p, kb, 1 / TEMPO),
}


@dataclass
class Evidence:
    """One part's shortlists (padded to a matrix) and their scores: CTC per scorer."""

    swipes: list[RealSwipe]
    index: np.ndarray  # (swipes, candidates) lexicon index, -1 padding
    template: np.ndarray
    prior: np.ndarray
    length: np.ndarray
    truth: np.ndarray
    ctc: dict[str, np.ndarray]

    def hits(self, ctc: np.ndarray, weights: tuple[float, float, float], prior=None, k=1):
        prior = self.prior if prior is None else prior
        tw, pw, lb = weights
        score = ctc + tw * self.template + pw * prior + lb * self.length
        score = np.where(self.index < 0, -np.inf, score)
        top = np.argsort(-score, axis=1, kind="stable")[:, :k]
        return (np.take_along_axis(self.index, top, 1) == self.truth[:, None]).any(1)


def _pad(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width), fill, dtype=np.float64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


Frames = Callable[[list[tuple[np.ndarray, Keyboard]]], list[torch.Tensor]]
BATCH = 64


def shortlist_ctc(
    index: np.ndarray, swipes: list[RealSwipe], frames: Frames, decoder: LearnedDecoder
) -> np.ndarray:
    """CTC scores of the fixed shortlists `index` under the frame log-probabilities `frames`
    gives for each batch of traces."""
    rows = []
    for start in range(0, len(swipes), BATCH):
        chunk = [(r.swipe.points, r.swipe.keyboard) for r in swipes[start : start + BATCH]]
        for row, lp in zip(index[start : start + len(chunk)], frames(chunk)):
            rows.append(decoder.ctc_scores(lp, row[row >= 0]))
    return _pad(rows, index.shape[1], -1e9)


def gather(decoder: LearnedDecoder, swipes: list[RealSwipe]) -> Evidence:
    """The base's cut shortlist of every swipe, with the base's CTC scores under the trace
    and each variant of it."""
    scores = decoder.score_many([r.swipe for r in swipes], batch_size=BATCH)
    width = max(len(s.lexicon_index) for s in scores)
    index = _pad([s.lexicon_index for s in scores], width, -1).astype(np.int64)
    ctc = {"base": _pad([s.ctc for s in scores], width, -1e9)}
    for name, variant in VARIANTS.items():

        def frames(chunk, v=variant):
            return decoder.frame_log_probs([(v(p, kb), kb) for p, kb in chunk])

        ctc[name] = shortlist_ctc(index, swipes, frames, decoder)
    return Evidence(
        swipes,
        index,
        _pad([s.template for s in scores], width, 0.0),
        _pad([s.prior for s in scores], width, 0.0),
        _pad([s.target_length for s in scores], width, 0.0),
        np.array([decoder.lexicon.index(r.swipe.word) for r in swipes]),
        ctc,
    )


def score_members(
    ev: Evidence, base: LearnedDecoder, members: list[LearnedDecoder]
) -> dict[str, np.ndarray]:
    """Each member's CTC scores of the base's shortlists (`member<i>`), and the scores under
    the base's and the first k members' frame probabilities averaged (`frames<k>`: one CTC
    pass, as a single model of the mixture would cost)."""
    out = {}
    for k, member in enumerate(members, start=1):
        out[f"member{k}"] = shortlist_ctc(ev.index, ev.swipes, member.frame_log_probs, member)
        if any(m.spec != base.spec for m in members[:k]):
            continue  # frames laid out otherwise (resampled along the path): no frame mixture

        def mixture(chunk, models=(base, *members[:k])):
            per_model = [m.frame_log_probs(chunk) for m in models]
            n = float(np.log(len(models)))
            return [torch.logsumexp(torch.stack(lps), 0) - n for lps in zip(*per_model)]

        out[f"frames{k}"] = shortlist_ctc(ev.index, ev.swipes, mixture, base)
    return out


def score_other_views(ev: Evidence, members: list[LearnedDecoder]) -> dict[str, np.ndarray]:
    """Each member's CTC scores of the base's shortlists with its frames laid out the other
    way (`view<i>`): a model trained on both views (`data.other_view_share`) read twice."""
    out = {}
    for i, member in enumerate(members, start=1):
        view = member.with_features(replace(member.spec, resample=other_view(member.spec.resample)))
        out[f"view{i}"] = shortlist_ctc(ev.index, ev.swipes, view.frame_log_probs, view)
    return out


@dataclass
class Lever:
    name: str
    ctc: list[str]  # scorers averaged
    prior_cap: float | None = None


def _capped(ev: Evidence, cap: float | None) -> np.ndarray:
    return ev.prior if cap is None else np.minimum(ev.prior, cap)


def measure(lever: Lever, val: Evidence, dev: Evidence) -> dict:
    """Weights chosen on public-val; top-1/top-4 on both parts and the dev hits."""
    cv = np.mean([val.ctc[n] for n in lever.ctc], axis=0)
    cd = np.mean([dev.ctc[n] for n in lever.ctc], axis=0)
    pv, pd = _capped(val, lever.prior_cap), _capped(dev, lever.prior_cap)
    grid = itertools.product(FUSION_TEMPLATE_GRID, PRIOR_GRID, LENGTH_BONUS_GRID)
    best = max(grid, key=lambda w: val.hits(cv, w, pv).mean())
    dev_hits = dev.hits(cd, best, pd)
    return {
        "weights": best,
        "val": val.hits(cv, best, pv).mean(),
        "dev": dev_hits.mean(),
        "dev4": dev.hits(cd, best, pd, k=4).mean(),
        "hits": dev_hits,
    }


def lexicon_sizes(
    spec: DecoderSpec, model: torch.nn.Module, sizes: list[int], parts: dict[str, list[RealSwipe]]
) -> list[str]:
    """The lexicon as shipped against larger wordfreq lexicons (fusion re-tuned on
    public-val; the template pass keeps twice the candidates from 200,000 words up)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from make_lexicon import build  # needs wordfreq

    rows = build("en", max(sizes))
    lines = []
    base_hits = None
    for n in [spec.lexicon_size, *sizes]:
        words = rows[:n]
        lex = Lexicon([w for w, _ in words], np.array([f for _, f in words]), "en")
        decoder = spec.build_decoder(model, lex)
        keep = spec.template.coarse_keep * (2 if n >= 2 * spec.lexicon_size else 1)
        decoder.template.params = replace(decoder.template.params, coarse_keep=keep)
        decoder.fusion, val_top1 = tune_fusion(decoder, [r.swipe for r in parts["public-val"]])
        rk = ranks(decoder.decode_many, parts["dev"])
        hits = np.array([r == 1 for r in rk])
        m = metrics_from_ranks(rk)
        cover = np.mean([r.swipe.word in lex for r in parts["dev"]])
        if base_hits is None:
            base_hits, diff = hits, "(the base as shipped)"
        else:
            diff = _points(parts["dev"], hits, base_hits)
        lines.append(
            f"| {n:,} | {cover:.3f} | {val_top1:.3f} | {m['top1']:.3f} | {m['top4']:.3f} | {diff} |"
        )
        print(lines[-1], flush=True)
    return lines


def _points(swipes: list[RealSwipe], hits: np.ndarray, base: np.ndarray) -> str:
    return paired_points([r.user for r in swipes], hits, base)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec, model, _ = read_model_dir(base_dir("en"))
    loaded = [read_model_dir(folder)[:2] for folder in args.members]
    loaded += [(spec, load_scout(folder, spec)) for folder in args.scouts]
    parts = {p: load_real(p)[: args.limit or None] for p in PARTS}
    evidence = {}
    for part, swipes in parts.items():
        decoder = spec.build_decoder(model, CONDITION.build([r.swipe.word for r in swipes]))
        evidence[part] = gather(decoder, swipes)
        others = [m_spec.build_decoder(m_model, decoder.lexicon) for m_spec, m_model in loaded]
        if others:
            evidence[part].ctc.update(score_members(evidence[part], decoder, others))
        if args.other_view:
            evidence[part].ctc.update(score_other_views(evidence[part], others))
        print(
            f"{part}: evidence of {len(swipes)} swipes ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    val, dev = evidence["public-val"], evidence["dev"]

    members = [f"member{i + 1}" for i in range(len(loaded))]
    levers = [
        Lever("the base (re-tuned the same way)", ["base"]),
        Lever("TTA: shifted up/down", ["base", "up", "down"]),
        Lever("TTA: shifted left/right", ["base", "left", "right"]),
        Lever("TTA: larger/smaller", ["base", "larger", "smaller"]),
        Lever("TTA: slower/faster", ["base", "slower", "faster"]),
        Lever("TTA: all 8 variants", ["base", *VARIANTS]),
        *[Lever(f"prior capped at {cap:g}", ["base"], cap) for cap in PRIOR_CAPS],
    ]
    for k in range(1, len(members) + 1):
        levers.append(
            Lever(f"ensemble of the base and {k} recipe member(s)", ["base", *members[:k]])
        )
        if f"frames{k}" in val.ctc:
            levers.append(
                Lever(f"... frame probabilities averaged ({k + 1} models)", [f"frames{k}"])
            )
    for i, name in enumerate(members):
        levers.append(Lever(f"recipe member {i + 1} alone", [name]))
        if f"view{i + 1}" in val.ctc:
            view = f"view{i + 1}"
            levers += [
                Lever(f"recipe member {i + 1}, its other view alone", [view]),
                Lever(f"recipe member {i + 1}, both views averaged", [name, view]),
                Lever(f"the base and member {i + 1}'s both views", ["base", name, view]),
            ]

    results = [measure(lever, val, dev) for lever in levers]
    base = results[0]
    rows = []
    for lever, r in zip(levers, results):
        diff = "" if r is base else _points(parts["dev"], r["hits"], base["hits"])
        rows.append(
            f"| {lever.name} | {r['val']:.3f} | {r['dev']:.3f} | {r['dev4']:.3f} | {diff} | "
            f"{'/'.join(f'{w:g}' for w in r['weights'])} |"
        )
        print(rows[-1], flush=True)

    lines = report_header("Decoding levers on real people", "decoding_levers.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Lexicon: {CONDITION.label}. Members: "
        + (", ".join(str(m) for m in [*args.members, *args.scouts]) or "none")
        + ". Weights: template / prior / length bonus per letter, chosen on public-val.",
        "",
        "| lever | public-val top-1 | dev top-1 | dev top-4 | dev vs the base, points | weights |",
        "|---|---:|---:|---:|---|---|",
        *rows,
        "",
    ]
    if args.lexicon_sizes:
        lines += [
            "The lexicon as shipped, grown (every weight re-tuned on public-val):",
            "",
            "| words | dev coverage | public-val top-1 | dev top-1 | dev top-4 | dev vs the base, points |",
            "|---:|---:|---:|---:|---:|---|",
            *lexicon_sizes(spec, model, args.lexicon_sizes, parts),
            "",
        ]
    lines += [f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}", ""]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
