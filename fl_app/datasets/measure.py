"""``python -m fl_app.datasets measure FILE``: a checkpoint's accuracy on anyone's labelled swipes.

    python -m fl_app.datasets measure people.jsonl.gz            # the shipped base, the protocol
    python -m fl_app.datasets measure people.jsonl.gz --model DIR --as-served
    python -m fl_app.datasets measure ../shared/real-swipes/swipes.jsonl.gz --parts dev

FILE holds swipes in the project's JSONL format with `user`, `seq` and `word` (docs/formats.md),
such as people a keyboard team recorded, or users of the study this repository never saw. By
default the project's protocol (docs/data.md, bench/real.py): under each lexicon condition every
weight is tuned on the public-val users of the real swipes, then the file's swipes are measured
(top-1, top-4, MRR; a 95% interval from resampling the file's users). `--as-served` decodes as
the sidecar would: the checkpoint's own lexicon and weights, nothing tuned, no real swipes
needed. Users the checkpoint trained on, or whose swipes tune the weights, are refused
(`--allow-seen` overrides): a figure on them says nothing about a new phone. The check covers
the real parts the manifest records, and for a federation round those of the checkpoint its
run started from (not the devices' own people, whom a round's manifest does not name). The
table goes to stdout, ending with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_app.checkpoints.errors import CheckpointError
from fl_app.checkpoints.format import read_manifest_dir
from fl_app.datasets.real import (
    RealSwipe,
    RealSwipesMissing,
    load_real,
    read_labelled,
    stratified_sample,
)
from fl_app.datasets.split import check_parts

if TYPE_CHECKING:  # the decoder and torch load only when a measurement runs: `import` stays light
    from fl_app.datasets.real_eval import LexiconCondition, RealFigure
    from fl_app.decoder.ranking import LearnedDecoder
    from fl_app.decoder.spec import DecoderSpec

TUNED_ON = "public-val"  # the real part whose users every tuned weight is chosen on
CONDITION_NAMES = ("10k+words", "100k+words", "100k")  # real_eval.CONDITIONS, in its order


class MeasureRefused(ValueError):
    """The file cannot give an honest figure (nothing valid in it, or users already seen)."""


def trained_parts(manifest: dict[str, Any]) -> set[str]:
    """Real parts a checkpoint learned from: those its manifest records (the recipe's) and,
    for a federation round, those of the checkpoint its run started from (`init=base`)."""
    real = (manifest.get("data") or {}).get("real") or {}
    parts = {p for p in real.get("parts", []) if isinstance(p, str)}
    start = (manifest.get("config") or {}).get("init_checkpoint")
    if isinstance(start, dict) and start.get("sha256"):
        parts |= trained_parts(start_manifest(start))
    return parts


def start_manifest(start: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the checkpoint a run started from: its folder as recorded, else the
    shipped base when the sha256 is the base's (a release measured on another machine)."""
    from fl_app.base import base_dir

    for folder in (start.get("dir"), base_dir("en")):
        try:
            manifest = read_manifest_dir(str(folder))
        except (OSError, CheckpointError):
            continue
        if manifest.get("sha256") == start["sha256"]:
            return manifest
    raise MeasureRefused(
        f"this checkpoint's run started from {start.get('dir')} (sha256 "
        f"{str(start['sha256'])[:12]}), which is not here: which people it learned from cannot "
        "be told. --allow-seen measures anyway"
    )


def seen_parts(manifest: dict[str, Any], tuned: bool) -> list[str]:
    """Real parts whose users the figure must not include: those the checkpoint learned from
    and, when weights are tuned, the part they are tuned on."""
    return sorted(trained_parts(manifest) | ({TUNED_ON} if tuned else set()))


def check_unseen(rows: list[RealSwipe], parts: list[str], required: bool) -> str:
    """Refuse rows of users found in `parts` of the real swipes; say what was checked. Without
    the real swipes the check cannot run: an error when they are `required` anyway (tuning),
    else a note in the report (a keyboard team measuring its own people needs no study data)."""
    if not parts:
        return "nothing to check: the manifest records no real parts"
    try:
        known = {r.user for r in load_real(parts)}
    except RealSwipesMissing:
        if required:
            raise
        return f"not checked: no real swipes here to tell whether users are in {', '.join(parts)}"
    seen = sorted({r.user for r in rows} & known)
    if seen:
        more = ", ..." if len(seen) > 3 else ""
        raise MeasureRefused(
            f"{len(seen)} of the file's users ({', '.join(seen[:3])}{more}) are in the real "
            f"part(s) {', '.join(parts)}, which this checkpoint was trained or tuned on: a "
            "figure on them says nothing about new people. Use --parts to leave them out, or "
            "--allow-seen to measure anyway"
        )
    return f"none of the file's users is in {', '.join(parts)}"


def served_figure(
    label: str, spec: DecoderSpec, decoder: LearnedDecoder, rows: list[RealSwipe]
) -> RealFigure:
    """The checkpoint decoded as the sidecar serves it (`spec.build_decoder`): its own lexicon
    and weights."""
    from fl_app.datasets.real_eval import LexiconCondition, figure, ranks

    condition = LexiconCondition(spec.lexicon_size, add_eval_words=False)
    tuned = {"template": decoder.template.params.to_dict(), "fusion": decoder.fusion.to_dict()}
    fig = figure(label, condition, rows, ranks(decoder.decode_many, rows), tuned)
    return replace(fig, condition=f"{condition.label}, as served (its own weights)")


def read_rows(path: Path, parts: str | None, limit: int) -> tuple[list[RealSwipe], dict[str, int]]:
    """The file's valid swipes (optionally of some split parts, at most `limit` spread over
    users), each user's in seq order, and what was refused by error code."""
    rows, refused = read_labelled(path)
    if parts:
        keep = set(check_parts(parts))
        rows = [r for r in rows if r.part in keep]
    if not rows:
        which = f" of the parts {parts}" if parts else ""
        raise MeasureRefused(
            f"{path}: no valid labelled swipes{which} (refused: {refused or 'none'})"
        )
    rows.sort(key=lambda r: (r.user, r.seq))
    return (stratified_sample(rows, limit) if limit else rows), refused


def _shown(model: Path, base: Path) -> str:
    return "shipped base" if model.resolve() == base.resolve() else str(model)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `measure` subcommand's arguments."""
    p.add_argument("file", type=Path, help="labelled swipes, .jsonl or .jsonl.gz")
    p.add_argument("--model", type=Path, help="a checkpoint folder (default: the shipped base)")
    p.add_argument(
        "--label", help="the decoder's name in the table (default: shipped base, or the folder)"
    )
    p.add_argument("--as-served", action="store_true", help="its own lexicon and weights")
    p.add_argument(
        "--lexicons",
        default=",".join(CONDITION_NAMES),
        help=f"conditions to measure under (comma-separated): {', '.join(CONDITION_NAMES)}",
    )
    p.add_argument("--template", action="store_true", help="also the tuned template baseline")
    p.add_argument("--parts", help="only users of these split parts (for the real swipes file)")
    p.add_argument("--limit", type=int, default=0, help="at most this many swipes (0: all)")
    p.add_argument("--val-limit", type=int, default=0, help="public-val swipes to tune on (0: all)")
    p.add_argument("--allow-seen", action="store_true", help="measure users already seen")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def conditions_named(names: str) -> list[LexiconCondition]:
    from fl_app.datasets.real_eval import CONDITIONS

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in CONDITION_NAMES]
    if unknown or not chosen:
        raise MeasureRefused(
            f"unknown lexicon condition(s) {unknown}; known: {', '.join(CONDITION_NAMES)}"
        )
    return [CONDITIONS[CONDITION_NAMES.index(n)] for n in chosen]


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], list[RealFigure]]:
    """Everything the command reports, as one JSON-able dict, and the figures for the table."""
    if args.limit < 0 or args.val_limit < 0:
        raise MeasureRefused("--limit and --val-limit take 0 (all) or a positive count")
    from fl_app.base import base_dir
    from fl_app.datasets.real_eval import coverage, measure_on_real
    from fl_app.decoder.spec import read_model_dir

    conditions = [] if args.as_served else conditions_named(args.lexicons)
    folder = args.model or base_dir("en")
    spec, model, manifest = read_model_dir(folder)
    label = args.label or _shown(folder, base_dir("en"))
    rows, refused = read_rows(args.file, args.parts, args.limit)
    unseen = "--allow-seen: not checked"
    if not args.allow_seen:
        parts = seen_parts(manifest, tuned=not args.as_served)
        unseen = check_unseen(rows, parts, required=not args.as_served)
    if args.as_served:
        decoder = spec.build_decoder(model)
        figures = [served_figure(label, spec, decoder, rows)]
        lexicon_of = {figures[0].condition: decoder.lexicon}
    else:
        val = load_real(TUNED_ON)
        val = stratified_sample(val, args.val_limit) if args.val_limit else val
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        figures = measure_on_real({label: (spec, model)}, rows, val, conditions, args.template, log)
        words = [r.swipe.word for r in rows]
        lexicon_of = {c.label: c.build(words) for c in conditions}  # for coverage, once each
    report = {
        "file": str(args.file),
        "model": str(folder),
        "model_sha256": manifest.get("sha256"),
        "swipes": len(rows),
        "users": len({r.user for r in rows}),
        "refused": refused,
        "unseen": unseen,
        "figures": [
            {
                "decoder": f.decoder,
                "lexicon": f.condition,
                "coverage": coverage(rows, lexicon_of[f.condition]),
                **{k: f.metrics[k] for k in ("top1", "top4", "mrr", "n")},
                "top1_ci": list(f.top1_ci),
                "tuned": f.tuned,
            }
            for f in figures
        ],
    }
    return report, figures


def run(args: argparse.Namespace) -> int:
    """Measure, print the table and the JSON line; 2 with a message on bad input."""
    import torch

    from fl_app.datasets.real_eval import figures_table

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report, figures = measure(args)
    except (OSError, ValueError, CheckpointError) as exc:  # no file, a bad checkpoint, a refusal
        hint = (
            " (tuning needs the real swipes; --as-served does not)"
            if isinstance(exc, RealSwipesMissing)
            else ""
        )
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    print(
        f"{report['swipes']:,} swipes of {report['users']:,} users in {report['file']} "
        f"(refused: {report['refused'] or 'none'}); model {report['model']} "
        f"(sha256 {str(report['model_sha256'])[:12]}); seen users: {report['unseen']}\n"
    )
    print("\n".join(figures_table(figures)) + "\n")
    print(json.dumps(report), flush=True)
    return 0
