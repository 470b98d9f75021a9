"""``python -m fl_app.checkpoints``: list checkpoints and move the release pointer by hand.

Examples::

    python -m fl_app.checkpoints ls
    python -m fl_app.checkpoints --root /data/checkpoints show my-run 3
    python -m fl_app.checkpoints --store s3 promote my-run 3     # SWIPEFL_S3_* from the env
    python -m fl_app.checkpoints rollback
    python -m fl_app.checkpoints unpin
    python -m fl_app.checkpoints history

Errors print one line (``error: ...``) on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from . import DEFAULT_LOCAL_ROOT, STORE_KINDS, store_from_config
from .errors import CheckpointError
from .store import CheckpointStore

EXIT_ERROR = 2
# The CLI is interactive: fail fast when the store is down.
_CLI_S3_OPTIONS = {
    "connect_timeout": 3.0,
    "read_timeout": 20.0,
    "max_attempts": 3,
    "max_retry_s": 5.0,
}


def _round(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"round must be a non-negative integer, not {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"round must be a non-negative integer, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fl_app.checkpoints",
        description="Inspect the swipe-fl checkpoint store and move the release pointer.",
    )
    parser.add_argument(
        "--store",
        choices=STORE_KINDS,
        default="local",
        help="local directory (default) or S3 bucket from SWIPEFL_S3_* environment variables",
    )
    parser.add_argument(
        "--root", default=None, help=f"local store directory (default ./{DEFAULT_LOCAL_ROOT})"
    )
    parser.add_argument(
        "--prefix", default="", help="sub-prefix (a subdirectory, or under SWIPEFL_S3_PREFIX)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log store operations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("ls", help="list runs and their rounds; '*' marks the release")
    show = sub.add_parser("show", help="print a checkpoint's manifest (default: newest round)")
    show.add_argument("run", help="run id")
    show.add_argument("round", nargs="?", type=_round, help="server round (default: newest)")
    show.add_argument(
        "--verify",
        action="store_true",
        help="also check the files' sha256 and the decoder section's bounds",
    )
    promote = sub.add_parser("promote", help="release this checkpoint and pin the pointer")
    promote.add_argument("run", help="run id")
    promote.add_argument("round", type=_round, help="server round")
    sub.add_parser("rollback", help="release the previous release again and pin the pointer")
    sub.add_parser("unpin", help="let automatic (auto-best) releases move the pointer again")
    hist = sub.add_parser("history", help="print every pointer move, oldest first")
    hist.add_argument("-n", type=int, default=0, help="only the last N moves")
    return parser


def _describe_pointer(pointer: dict[str, Any]) -> str:
    pinned = ", pinned" if pointer.get("pinned") else ""
    return f"{pointer['path']} ({pointer.get('reason', '?')}{pinned})"


def _cmd_ls(store: CheckpointStore, args: argparse.Namespace) -> None:
    release = store.read_release()
    runs = store.list_runs()
    print(f"store: {store.describe()}")
    print(f"release: {_describe_pointer(release) if release else 'none'}")
    if not runs:
        print("no checkpoints")
        return
    width = max(len(run) for run in runs)
    for run in runs:
        marks = []
        for server_round in store.list_rounds(run):
            released = release and (release["run_id"], release["round"]) == (run, server_round)
            marks.append(f"{server_round}*" if released else str(server_round))
        print(f"{run:<{width}}  rounds: {' '.join(marks)}")
    if release:
        print("(* = released)")


def _check_decoder(manifest: dict[str, Any]) -> None:
    """``CheckpointError`` when the decoder section is one every sidecar refuses (sizes beyond
    what the project may ship, bad types); a checkpoint without one is not judged here."""
    section = manifest.get("decoder")
    if section is None:
        return
    from fl_app.decoder.spec import DecoderSpec  # torch: only for the commands that need it
    from fl_app.decoder.spec_bounds import DecoderSpecError

    try:
        DecoderSpec.from_manifest(section)
    except DecoderSpecError as exc:
        raise CheckpointError(
            f"checkpoint {manifest.get('path')}: sidecars refuse its decoder section "
            f"({exc.reason}: {exc})"
        ) from None


def _cmd_show(store: CheckpointStore, args: argparse.Namespace) -> None:
    if args.verify:
        manifest = store.verify(args.run, args.round)
        _check_decoder(manifest)
    else:
        manifest = store.load_manifest(args.run, args.round)
    release = store.read_release()
    notes = []
    if release and (release["run_id"], release["round"]) == (manifest["run_id"], manifest["round"]):
        notes.append("released" + (", pinned" if release.get("pinned") else ""))
    if args.verify:
        notes.append("sha256 verified, decoder section within bounds")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    print(f"checkpoint {manifest['path']}{suffix}")
    print(json.dumps(manifest, indent=2, sort_keys=True))


def _cmd_promote(store: CheckpointStore, args: argparse.Namespace) -> None:
    _check_decoder(store.load_manifest(args.run, args.round))
    pointer = store.promote(args.run, args.round)
    print(f"release -> {_describe_pointer(pointer)}")


def _cmd_rollback(store: CheckpointStore, args: argparse.Namespace) -> None:
    before = store.read_release()
    pointer = store.rollback()
    print(f"release {before['path'] if before else 'none'} -> {_describe_pointer(pointer)}")


def _cmd_unpin(store: CheckpointStore, args: argparse.Namespace) -> None:
    pointer = store.unpin()
    print(f"release {pointer['path']} unpinned: automatic releases resume")


def _cmd_history(store: CheckpointStore, args: argparse.Namespace) -> None:
    entries = store.history()
    if args.n > 0:
        entries = entries[-args.n :]
    if not entries:
        print("no releases yet")
        return
    for entry in entries:
        src = (entry.get("from") or {}).get("path", "none")
        dst = (entry.get("to") or {}).get("path", "?")
        pinned = " pinned" if entry.get("pinned") else ""
        print(f"{entry.get('when', '?')}  {entry.get('reason', '?'):<9}  {src} -> {dst}{pinned}")


COMMANDS = {
    "ls": _cmd_ls,
    "show": _cmd_show,
    "promote": _cmd_promote,
    "rollback": _cmd_rollback,
    "unpin": _cmd_unpin,
    "history": _cmd_history,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        s3_options = _CLI_S3_OPTIONS if args.store == "s3" else {}
        store = store_from_config(args.store, args.root, args.prefix, **s3_options)
        COMMANDS[args.command](store, args)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0
