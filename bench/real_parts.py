"""What the benchmarks that decode public-val and dev users share: their common arguments
(how many swipes, threads, where the report goes, which model) and the two parts, cut alike."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fl_app.base import base_dir
from fl_app.datasets.real import RealSwipe, load_real
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.spec import DecoderSpec, read_model_dir


def real_bench_parser(doc: str, default_out: Path) -> argparse.ArgumentParser:
    """A parser described by the module docstring's first paragraph, with --limit, --threads
    and --out; the benchmark adds what it measures."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="public-val and dev swipes (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=default_out)
    return parser


def model_bench_parser(doc: str, default_out: Path) -> argparse.ArgumentParser:
    """`real_bench_parser` with --model: the recipe output read (default: the shipped base)."""
    parser = real_bench_parser(doc, default_out)
    parser.add_argument("--model", type=Path, default=base_dir("en"), help="a recipe output")
    return parser


def model_and_parts(
    args: argparse.Namespace,
) -> tuple[DecoderSpec, SwipeModel, list[RealSwipe], list[RealSwipe]]:
    """The model at `args.model` (torch on `args.threads`), public-val and dev cut to
    `args.limit`: where every `model_bench_parser` benchmark starts."""
    torch.set_num_threads(args.threads)
    spec, model, _ = read_model_dir(args.model)
    val, dev = val_and_dev(args.limit)
    return spec, model, val, dev


def val_and_dev(limit: int) -> tuple[list[RealSwipe], list[RealSwipe]]:
    """Public-val (weights are chosen on it) and dev (figures are reported on it), each cut to
    its first `limit` swipes (0: all)."""
    return load_real("public-val")[: limit or None], load_real("dev")[: limit or None]


def parts_sentence(val: list[RealSwipe], dev: list[RealSwipe]) -> str:
    """How many swipes and people a report's figures rest on."""
    users = len({r.user for r in dev})
    return f"Dev: {len(dev)} swipes of {users} users; public-val: {len(val)} swipes."
