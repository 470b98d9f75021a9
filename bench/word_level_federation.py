"""Federating from the shipped base: CTC-only clients against word-level clients.

    python bench/word_level_federation.py --stores outputs/device-stores --threads 2

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
  weights tuned on public-val.

Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from real_federation import (  # noqa: E402
    CONDITIONS,
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

from fl_app.checkpoints.format import read_checkpoint_dir  # noqa: E402
from fl_app.datasets.real import CITATION  # noqa: E402
from fl_app.decoder.spec import DecoderSpec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "word-level-federation.md"
START = "shipped base (start)"
ARMS = {"ctc": "+ federation, CTC clients", "word": "+ federation, word-level clients"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0], DEFAULT_OUT)
    parser.add_argument("--word-weight", type=float, default=1.0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    work, memory, t0, stores, dev, val = start(args, "swipefl-wordfed-")
    tensors, manifest = read_checkpoint_dir(args.base)
    spec = DecoderSpec.from_manifest(manifest["decoder"])
    runs = {
        "ctc": federate(args, args.base, stores, work, "ctc"),  # federate pins CTC clients
        "word": federate(
            args, args.base, stores, work, "word", (f"train.word_weight={args.word_weight}",)
        ),
    }
    models = {START: (spec, tensors)}
    models |= {ARMS[k]: (spec, run["tensors"]) for k, run in runs.items()}
    figures = dev_figures(models, dev, val)
    memory.stop()
    text = render(args, argv, runs, figures, dev, memory, time.perf_counter() - t0)
    write_report(args.out, text)
    return 0


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


def render(args, argv, runs, figures, dev, memory, total) -> str:
    labels = [c.label for c in CONDITIONS]
    diffs = []
    for c in labels:
        start, ctc, word = (figures[k][c] for k in (START, ARMS["ctc"], ARMS["word"]))
        diffs += [
            f"| {c} | CTC clients - start | {difference(dev, ctc, start)} |",
            f"| {c} | word-level clients - start | {difference(dev, word, start)} |",
            f"| {c} | word-level clients - CTC clients | {difference(dev, word, ctc)} |",
        ]
    local = {
        k: np.mean([r["train"]["train-seconds"] for r in run["summary"].records if r.get("train")])
        for k, run in runs.items()
    }
    census = runs["ctc"]["summary"].records[1]["census"]
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
            f"- Both runs: from the shipped base, {args.rounds} rounds, {args.clients_per_round} "
            f"clients a round, {args.epochs:g} local epoch(s), batch {args.batch}, lr {args.lr}, "
            f"FedAvg; the word-level run adds train.word_weight={args.word_weight:g} "
            f"({runs['word']['cfg'].train.word_candidates} candidates a swipe).",
            "",
            "## Public-val, the last round: top-1 (all its swipes; the choice)",
            "",
            "Decoding weights tuned on these swipes, the public-val words added for the second "
            "column.",
            "",
            *figure_table(figures, lambda fig: f"{fig.tuned['val_top1']:.3f}"),
            "",
            f"Each run's evaluator ({args.eval_swipes} public-val swipes, top-1, the shipped "
            "weights; the release rule's):",
            "",
            "| clients | round 0 | last round | best round | release |",
            "|---|---|---|---|---|",
            evaluator_line("CTC", runs["ctc"]),
            evaluator_line("word-level", runs["word"]),
            "",
            "## Dev users, the last round: top-1 (95% interval over users)",
            "",
            *figure_table(figures, with_interval),
            "",
            *differences_table(diffs),
            "",
            "## Cost",
            "",
            f"- Federated wall time: {runs['ctc']['wall'] / 60:.1f} min (CTC clients), "
            f"{runs['word']['wall'] / 60:.1f} min (word-level clients); a client's round, mean "
            f"{local['ctc']:.2f} s and {local['word']:.2f} s (word-level: mining included).",
            f"- Peak memory of the whole process tree (PSS): {memory.peak / 2**30:.2f} GiB.",
            f"- Total wall time {total / 60:.0f} min.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
