"""Does a trace hold evidence the decoder's fused score leaves out? A learned fusion over more
per-candidate evidence, fitted on public-val, measured on dev users.

    python bench/fusion_evidence.py [--model DIR]

The shipped ranking adds four terms per scored candidate with weights a grid search chose on
public-val: the model's CTC log-likelihood, the template's log-likelihood, the frequency prior
and the length bonus per CTC letter. Most of dev's misses are words the trace itself preferred
(bench/results/real-misses.md). If some geometric evidence outside those four told the truth
from its rivals (how far the trace starts and ends from the word's first and last key, shape
and location apart, a path far longer or shorter than the word's, the time per letter,
doubled letters), a softmax over each swipe's scored candidates fitted on that evidence would
rank better than the four tuned weights.

Under each lexicon condition the model's fusion weights are tuned on public-val (as
bench/real_misses.py does) and every public-val and dev swipe is scored once; the evidence of
each scored candidate is read from the decoder's own template banks. A conditional logit over
the candidates (L-BFGS in torch, started from the tuned weights, an L2 pull towards them) is
fitted per evidence set: its public-val top-1 by 5-fold cross-validation over users (the
choice), then fitted on all of public-val and applied to dev, paired by user against the tuned
four weights. Swipes whose word was not scored count as misses everywhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from real_parts import model_and_parts, model_bench_parser, parts_sentence
from report_header import report_header, shown_path, write_report

from fl_app.datasets.real import CITATION, RealSwipe
from fl_app.datasets.real_eval import CONDITIONS, paired_points, tuned_on_val, tuned_template
from fl_app.decoder.ranking import CandidateScores, LearnedDecoder
from fl_app.decoder.template import normalise_shape, resample_path

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "fusion-evidence.md"
MEASURED_UNDER = (CONDITIONS[0], CONDITIONS[2])  # 10k + evaluated words; 100k as shipped
EVIDENCE = (
    "ctc",  # the four terms the shipped ranking adds
    "template",
    "prior",
    "letters",
    "location^2",  # template channels apart: mean distance to the word's path, squared
    "shape^2",
    "start^2",  # trace start to the first key, squared (key units)
    "end^2",  # trace end to the last key
    "path ratio^2",  # log(trace path / word path), squared
    "letters x log ms",  # letters against the trace's duration and length: a linear
    "letters x log path",  # softmax can then prefer more letters for a longer trace
    "letters^2",
    "doubled",  # letters a collapsed CTC target and a template cannot see
    "max location^2",  # the worst point's distance: a key the trace never went near
)
SETS = {  # columns of EVIDENCE each fit may weigh (the others stay 0)
    "the four terms, refitted": (0, 1, 2, 3),
    "+ start and end": (0, 1, 2, 3, 6, 7),
    "+ shape and location apart": (0, 1, 2, 3, 4, 5),
    "all evidence": tuple(range(len(EVIDENCE))),
}
STRENGTHS = (1e-2, 1e-3)  # L2 pull towards the tuned weights (evidence standardised)
FOLDS = 5


def candidate_evidence(
    decoder: LearnedDecoder, row: RealSwipe, scores: CandidateScores
) -> np.ndarray:
    """(candidates, len(EVIDENCE)) for one scored swipe, from the decoder's template banks."""
    swipe = row.swipe
    banks = decoder.template.templates(swipe.keyboard)
    at = np.searchsorted(banks.word_index, scores.lexicon_index)
    ku = swipe.keyboard.to_key_units(swipe.points[:, :2])
    trace = resample_path(ku)
    location = banks.location[at].transpose(0, 2, 1)  # (candidates, points, 2)
    shape = banks.shape[at].transpose(0, 2, 1)
    near = np.linalg.norm(location - trace, axis=-1)
    word_path = np.linalg.norm(np.diff(location, axis=1), axis=-1).sum(1)
    trace_path = np.linalg.norm(np.diff(ku, axis=0), axis=-1).sum()
    centres = banks.key_centres
    words = decoder.lexicon.words
    spelled = np.array([len(words[i]) for i in scores.lexicon_index], dtype=np.float64)
    letters = scores.target_length.astype(np.float64)
    return np.stack(
        [
            scores.ctc,
            scores.template,
            scores.prior,
            letters,
            near.mean(1) ** 2,
            np.linalg.norm(shape - normalise_shape(trace), axis=-1).mean(1) ** 2,
            ((ku[0] - centres[banks.start_key[at]]) ** 2).sum(1),
            ((ku[-1] - centres[banks.end_key[at]]) ** 2).sum(1),
            (np.log(trace_path + 0.5) - np.log(word_path + 0.5)) ** 2,
            letters * np.log(max(swipe.duration_ms, 1.0)),
            letters * np.log(trace_path + 0.5),
            letters**2,
            spelled - letters,
            near.max(1) ** 2,
        ],
        axis=1,
    )


def read_part(
    decoder: LearnedDecoder, rows: Sequence[RealSwipe]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every swipe's candidate evidence and the truth's position among them (-1: not scored)."""
    evidence, truth = [], []
    words = decoder.lexicon.words
    for row, scores in zip(rows, decoder.score_many([r.swipe for r in rows])):
        evidence.append(candidate_evidence(decoder, row, scores))
        scored = [words[i] for i in scores.lexicon_index]
        truth.append(scored.index(row.swipe.word) if row.swipe.word in scored else -1)
    return evidence, np.array(truth)


def hits(evidence: Sequence[np.ndarray], truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 where the weighted evidence ranks the truth first."""
    return np.array(
        [t >= 0 and int(np.argmax(x @ weights)) == t for x, t in zip(evidence, truth)], dtype=float
    )


def fit(
    evidence: Sequence[np.ndarray],
    truth: np.ndarray,
    columns: Sequence[int],
    start: np.ndarray,
    strength: float,
) -> np.ndarray:
    """Weights of a softmax over each swipe's candidates, fitted on `columns` of the evidence
    (the others stay 0), from `start` and pulled towards it."""
    cols = list(columns)
    kept = [i for i, t in enumerate(truth) if t >= 0]
    scale = np.concatenate([evidence[i][:, cols] for i in kept]).std(0) + 1e-9
    rows = [torch.tensor(evidence[i][:, cols] / scale) for i in kept]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    present = torch.arange(padded.shape[1])[None, :] < torch.tensor([len(r) for r in rows])[:, None]
    target = torch.tensor(truth[kept])
    origin = torch.tensor(start[cols] * scale)
    w = origin.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logits = (padded @ w).masked_fill(~present, -1e9)
        value = torch.nn.functional.cross_entropy(logits, target)
        value = value + strength * ((w - origin) ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    out = np.zeros(len(EVIDENCE))
    out[cols] = w.detach().numpy() / scale
    return out


def cross_validated(
    evidence: Sequence[np.ndarray],
    truth: np.ndarray,
    users: Sequence[str],
    columns: Sequence[int],
    start: np.ndarray,
    strength: float,
) -> float:
    """Public-val top-1 with each user's swipes ranked by weights fitted without that user."""
    position = {u: i for i, u in enumerate(sorted(set(users)))}
    fold = np.array([position[u] % FOLDS for u in users])
    out = np.zeros(len(truth))
    for f in range(FOLDS):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        w = fit([evidence[i] for i in train], truth[train], columns, start, strength)
        out[test] = hits([evidence[i] for i in test], truth[test], w)
    return float(out.mean())


def main(argv: list[str] | None = None) -> int:
    args = model_bench_parser(__doc__, DEFAULT_OUT).parse_args(
        sys.argv[1:] if argv is None else argv
    )
    t0 = time.perf_counter()
    spec, model, val, dev = model_and_parts(args)
    val_users, dev_users = [r.user for r in val], [r.user for r in dev]
    lines = report_header("Evidence the fused score leaves out", "fusion_evidence.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Model `{shown_path(args.model)}`. {parts_sentence(val, dev)} Evidence: "
        + ", ".join(f"`{e}`" for e in EVIDENCE)
        + ".",
        "",
        "| lexicon | fusion | L2 | public-val top-1 (5-fold over users) | dev top-1 "
        "| vs the tuned four weights |",
        "|---|---|---:|---:|---:|---|",
    ]
    for condition in MEASURED_UNDER:
        val_lex = condition.build([r.swipe.word for r in val])
        decoder, _ = tuned_on_val(spec, model, val_lex, tuned_template(condition, val), val)
        f = decoder.fusion
        start = np.zeros(len(EVIDENCE))
        start[:4] = (1.0, f.template, f.prior, f.length_bonus)
        val_evidence, val_truth = read_part(decoder, val)
        decoder.lexicon = condition.build([r.swipe.word for r in dev])
        dev_evidence, dev_truth = read_part(decoder, dev)
        tuned = hits(dev_evidence, dev_truth, start)
        lines.append(
            f"| {condition.label} | the tuned four weights (shipped) | | "
            f"{hits(val_evidence, val_truth, start).mean():.3f} (tuned on all of it) "
            f"| {tuned.mean():.3f} | |"
        )
        for name, cols in SETS.items():
            for strength in STRENGTHS:
                cv = cross_validated(val_evidence, val_truth, val_users, cols, start, strength)
                w = fit(val_evidence, val_truth, cols, start, strength)
                fitted = hits(dev_evidence, dev_truth, w)
                lines.append(
                    f"| {condition.label} | {name} | {strength:g} | {cv:.3f} "
                    f"| {fitted.mean():.3f} | {paired_points(dev_users, fitted, tuned)} |"
                )
                print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}", ""]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
