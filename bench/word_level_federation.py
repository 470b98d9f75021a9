"""Federating from the shipped base: CTC-only clients against word-level clients.

    python bench/word_level_federation.py --stores outputs/device-stores --threads 2
    python bench/word_level_federation.py --stores outputs/device-stores --threads 2 \
        --arms word --lexicons 10k+words 100k --out bench/results/OTHER.md

The shipped base finished its recipe with a word-level stage (fl_app/decoder/discriminative.py):
training on a softmax over each swipe's shortlisted words. A ClientApp that trains CTC only
(`train.word_weight=0`) pulls the model back towards the objective the base left; with
`train.word_weight > 0` each device mines its own close calls with the round's decoder and
trains on them. Two federations over the 747 device users of ../shared/real-swipes (the
settings of bench/real_federation.py, one SuperNode per user), identical but for that key:

- the choice (which default `train.word_weight` takes) is made on public-val: all its swipes,
  decoding weights tuned on them (beside each run's per-round evaluator, a 500-swipe sample);
- dev users (never trained on, never chosen on) get the figures with 95% intervals and paired
  differences, under the 100,000-word lexicon as shipped and with the dev words added, decoding
  weights tuned on public-val (`--lexicons`: any of the three real-evaluation lexicons).

`--arms word` runs the word-level federation alone: does the product's own federation carry a
base further? When the release rule released a round other than the last, that round is
measured too: it is what devices would serve.

Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from real_federation import (  # noqa: E402
    CONDITION_KEYS,
    build_parser,
    dev_figures,
    difference,
    differences_table,
    federate,
    figure_table,
    start,
    with_interval,
)
from report_header import report_header, write_report  # noqa: E402

from fl_app.base import base_dir  # noqa: E402
from fl_app.checkpoints.format import read_checkpoint_dir  # noqa: E402
from fl_app.datasets.measure import CONDITION_NAMES, conditions_named  # noqa: E402
from fl_app.datasets.real import CITATION  # noqa: E402
from fl_app.decoder.spec import DecoderSpec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "word-level-federation.md"
START = "shipped base (start)"
ARMS = {"ctc": "+ federation, CTC clients", "word": "+ federation, word-level clients"}
CLIENTS = {"ctc": "CTC", "word": "word-level"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0], DEFAULT_OUT)
    parser.add_argument("--word-weight", type=float, default=1.0)
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument(
        "--lexicons",
        nargs="+",
        choices=CONDITION_NAMES,
        default=list(CONDITION_KEYS),
        help="the lexicon conditions the figures are measured under",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    conditions = conditions_named(",".join(args.lexicons))
    work, memory, t0, stores, dev, val = start(args, "swipefl-wordfed-")
    tensors, manifest = read_checkpoint_dir(args.base)
    spec = DecoderSpec.from_manifest(manifest["decoder"])
    extra = {"ctc": (), "word": (f"train.word_weight={args.word_weight}",)}  # federate pins CTC
    runs = {arm: federate(args, args.base, stores, work, arm, extra[arm]) for arm in args.arms}
    models = {START: (spec, tensors)}
    models |= {ARMS[k]: (spec, run["tensors"]) for k, run in runs.items()}
    models |= {
        released_label(k): (spec, run["released_tensors"])
        for k, run in runs.items()
        if released_elsewhere(run)
    }
    figures = dev_figures(models, dev, val, conditions)
    memory.stop()
    text = render(args, argv, manifest, runs, figures, dev, memory, time.perf_counter() - t0)
    write_report(args.out, text)
    return 0


def released_elsewhere(run: dict) -> bool:
    """Whether the release rule released a round of this run other than its last."""
    released = run["released_round"]
    return released is not None and released != max(run["summary"].rounds)


def released_label(arm: str) -> str:
    return f"{ARMS[arm]}, the round released"


def evaluator_line(label: str, run: dict) -> str:
    """Public-val (the run's evaluator): round 0, the last round, the best and the release."""
    records = run["summary"].records
    top1 = {r["round"]: r["central"]["top1"] for r in records if "top1" in r["central"]}
    last, best = max(top1), max(top1, key=top1.get)
    released = run["released_round"]
    release = f"released round {released}" if released is not None else "released nothing"
    return (
        f"| {label} | {top1[0]:.3f} | {top1[last]:.3f} | {top1[best]:.3f} (round {best}) "
        f"| {release} |"
    )


def render(args, argv, base, runs, figures, dev, memory, total) -> str:
    labels = list(figures[START])
    pairs = [(ARMS[k], START, f"{CLIENTS[k]} clients - start") for k in runs]
    pairs += [
        (released_label(k), START, f"{CLIENTS[k]} clients, the round released - start")
        for k in runs
        if released_label(k) in figures  # measured only when it is not the last round
    ]
    if len(runs) == 2:
        pairs.append((ARMS["word"], ARMS["ctc"], "word-level clients - CTC clients"))
    diffs = [
        f"| {c} | {name} | {difference(dev, figures[a][c], figures[b][c])} |"
        for c in labels
        for a, b, name in pairs
    ]
    local = {
        k: np.mean([r["train"]["train-seconds"] for r in run["summary"].records if r.get("train")])
        for k, run in runs.items()
    }
    first = next(iter(runs.values()))
    census = first["summary"].records[1]["census"]
    word_run = (
        f"; the word-level run adds train.word_weight={args.word_weight:g} "
        f"({runs['word']['cfg'].train.word_candidates} candidates a swipe)"
        if "word" in runs
        else ""
    )
    each = "Both runs" if len(runs) == 2 else "The run"
    shipped = args.base.resolve() == base_dir("en").resolve()
    start_from = "the shipped base" if shipped else str(args.base)
    return "\n".join(
        [
            *report_header(
                "Federating from the shipped base: CTC or word-level clients",
                "word_level_federation.py",
                f". Data: {CITATION}",
                argv,
            ),
            "## Setup",
            "",
            f"- {census['nodes']} SuperNodes, one per device user ({census['eligible']} with "
            "enough training swipes to be sampled).",
            f"- {each}: from {start_from} (sha256 {base['sha256'][:12]}...), "
            f"{args.rounds} rounds, {args.clients_per_round} clients a round, {args.epochs:g} "
            f"local epoch(s), batch {args.batch}, lr {args.lr}, FedAvg{word_run}.",
            "",
            "## Public-val, the last round: top-1 (all its swipes; the choice)",
            "",
            "Decoding weights tuned on these swipes; the public-val words added where a "
            "lexicon says so.",
            "",
            *figure_table(figures, lambda fig: f"{fig.tuned['val_top1']:.3f}"),
            "",
            f"Each run's evaluator ({args.eval_swipes} public-val swipes, top-1, the shipped "
            "weights; the release rule's):",
            "",
            "| clients | round 0 | last round | best round | release |",
            "|---|---|---|---|---|",
            *(evaluator_line(CLIENTS[k], run) for k, run in runs.items()),
            "",
            "## Dev users: top-1 (95% interval over users)",
            "",
            *figure_table(figures, with_interval),
            "",
            *differences_table(diffs),
            "",
            "## Cost",
            "",
            *(
                f"- Federated wall time, {CLIENTS[k]} clients: {run['wall'] / 60:.1f} min; a "
                f"client's round, mean {local[k]:.2f} s"
                + (" (mining included)." if k == "word" else ".")
                for k, run in runs.items()
            ),
            f"- Peak memory of the whole process tree (PSS): {memory.peak / 2**30:.2f} GiB.",
            f"- Total wall time {total / 60:.0f} min.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
