"""Recipe outputs paired by swipe on the same real people: is a change a gain, or the spread
between runs?

    python bench/paired_models.py --models REFERENCE DIR [DIR ...] [--lexicon 10k+words]
        [--split-by-words-of public-train] [--limit N] [--threads 2]

Every model folder is one run of `python -m fl_app.pretrain` (or the shipped base); the first
is the reference. Under one lexicon condition (`--lexicon`: "10k + the evaluated words", the
headline target's, unless told) each model's decoding weights are tuned on public-val, where
choices are made, and its dev ranks kept; each other model's dev top-1 is shown against the
reference's, paired by swipe, with a 95% interval from resampling users.
The "changes" column lists where a run's recipe differs from the reference's (output folders
and thread counts left out). Word-level experiments started from one CTC stage
(`ctc_stage_from`) against a control from the same stage share every CTC weight, so what
separates them is the word-level change alone (docs/pretraining.md).
`--split-by-words-of PART` pairs them again on dev's swipes of words PART's people swiped and
on the rest: the study's prompts are shared, so a model trained on PART's traces (or a
generator given their words) has seen most of dev's words, and the split tells a gain on
those words from one on words new to it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from real_parts import parts_sentence, real_bench_parser, val_and_dev
from report_header import report_header, shown_path, write_report

from fl_app.datasets.measure import CONDITION_NAMES, conditions_named
from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import (
    FULL_SIZE,
    measure_on_real,
    paired_points,
    swipes_of_words,
)
from fl_app.datasets.split import check_parts
from fl_app.decoder.lexicon import Lexicon, load_lexicon
from fl_app.decoder.spec import read_model_dir
from fl_app.pretrain.config import PretrainConfig
from fl_app.pretrain.ctc_stage import differing_settings

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "paired-models.md"
# where two runs may differ without their recipes differing
NOT_RECIPE = ("out", "ctc_stage_out", "train.threads", "evaluate_dev", "eval_swipes")
# today's recipe as a manifest records it (through JSON: tuples become lists)
DEFAULTS = json.loads(json.dumps(asdict(PretrainConfig())))


def recipe_changes(manifest: dict, reference: dict) -> str:
    """`name=value` for each recipe setting where `manifest` differs from `reference`; a
    setting a manifest predates reads as its default (what the recipe did before it)."""
    mine, theirs = (
        with_defaults(m.get("recipe", {}).get("config", {})) for m in (manifest, reference)
    )
    changes = [
        f"{name}={json.dumps(value)}"
        for name, value, _ in differing_settings(mine, theirs)
        if name not in NOT_RECIPE
    ]
    return ", ".join(changes) or "(none)"


def with_defaults(config: dict, defaults: dict = DEFAULTS) -> dict:
    """`config` with every setting it lacks, at any depth, taken from `defaults`."""
    merged = dict(defaults)
    for key, value in config.items():
        below = defaults.get(key)
        both_sections = isinstance(value, dict) and isinstance(below, dict)
        merged[key] = with_defaults(value, below) if both_sections else value
    return merged


def words_described(words: list[str], lexicon: Lexicon) -> str:
    """How common and how long `words` are: the two parts of a split differ in kind as well as
    in whether a model saw them (a rank past the lexicon: not in it)."""
    ranks = [lexicon.index(w) if w in lexicon else len(lexicon) for w in words]
    letters = np.mean([len(w) for w in words])
    return f"median frequency rank {np.median(ranks):.0f}, {letters:.1f} letters on average"


def split_table(
    hits: dict[str, np.ndarray], reference: str, dev: list[RealSwipe], part: str
) -> list[str]:
    """Each model's dev top-1 (`hits`, by model, in `dev`'s order) on the swipes of words
    `part`'s people swiped and on the rest, and against the reference's on each, paired by
    swipe."""
    seen = swipes_of_words(dev, {r.swipe.word for r in load_real(part)})
    users = [r.user for r in dev]
    subsets = ((f"words {part}'s people swiped", seen), ("other words", ~seen))
    lexicon = load_lexicon("en", FULL_SIZE)
    kinds = "; ".join(
        f"{name}: {words_described([r.swipe.word for r, k in zip(dev, mask) if k], lexicon)}"
        for name, mask in subsets
    )
    header = " | ".join(
        f"{name} ({int(mask.sum())} swipes): top-1 | vs reference" for name, mask in subsets
    )
    lines = [
        "",
        f"Dev split by the word: did {part}'s people swipe it? ({kinds}; a word outside the "
        f"{FULL_SIZE:,}-word lexicon ranks {FULL_SIZE:,}.)",
        "",
        f"| model | {header} |",
        "|---" + "|---:|---" * len(subsets) + "|",
    ]
    for model, mine in hits.items():
        cells = []
        for _, mask in subsets:
            diff = "" if model == reference else paired_points(users, mine, hits[reference], mask)
            cells += [f"{mine[mask].mean():.3f}", diff]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = real_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="the reference first")
    parser.add_argument(
        "--lexicon",
        choices=CONDITION_NAMES,
        default=CONDITION_NAMES[0],  # 10k + evaluated words: the headline target
        help="the lexicon condition paired under",
    )
    parser.add_argument(
        "--split-by-words-of",
        metavar="PART",
        help="also pair on dev's swipes of words this split part's people swiped, and the rest",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if len(args.models) < 2 or len(set(args.models)) != len(args.models):
        parser.error("--models takes the reference and at least one other folder, each once")
    if args.split_by_words_of:
        try:
            check_parts(args.split_by_words_of)
        except ValueError as err:
            parser.error(str(err))
    (paired,) = conditions_named(args.lexicon)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    loaded = {shown_path(d): read_model_dir(d) for d in args.models}
    val, dev = val_and_dev(args.limit)
    models = {label: (spec, model) for label, (spec, model, _) in loaded.items()}
    figures = measure_on_real(models, dev, val, [paired], template=False)
    hits = {f.decoder: f.hits for f in figures}
    users = [r.user for r in dev]
    reference = next(iter(loaded))
    reference_manifest = loaded[reference][2]

    lines = report_header("Models paired by swipe", "paired_models.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        parts_sentence(val, dev),
        "",
        f"| model | changes against `{reference}` | public-val top-1 | dev top-1 | dev top-4 "
        f"| dev vs reference (points) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for fig in figures:
        manifest = loaded[fig.decoder][2]
        is_reference = fig.decoder == reference
        changes = "reference" if is_reference else recipe_changes(manifest, reference_manifest)
        diff = "" if is_reference else paired_points(users, hits[fig.decoder], hits[reference])
        lines.append(
            f"| `{fig.decoder}` | {changes} | {fig.tuned['val_top1']:.3f} "
            f"| {fig.metrics['top1']:.3f} | {fig.metrics['top4']:.3f} | {diff} |"
        )
    if args.split_by_words_of:
        lines += split_table(hits, reference, dev, args.split_by_words_of)
    lines += [
        "",
        f"Condition: {paired.label}. Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
