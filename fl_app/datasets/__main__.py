"""``python -m fl_app.datasets``: import a dataset file into swipe stores, or show the split.

    python -m fl_app.datasets import FILE --stores DIR [--parts device] [--source NAME]
    python -m fl_app.datasets import FILE --store FILE.sqlite
    python -m fl_app.datasets split            # users and swipes per part of the real swipes
    python -m fl_app.datasets measure FILE [--model DIR] [--as-served]   # a checkpoint's accuracy

The import ends with one JSON line: rows read, stored per user, refused by error code; so does
`measure` (after its table; fl_app/datasets/measure.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from fl_app.datasets import measure
from fl_app.datasets.importer import import_file
from fl_app.datasets.readers import READERS
from fl_app.datasets.split import PART_NAMES, user_part


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fl_app.datasets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import a dataset file into swipe stores")
    imp.add_argument("file", type=Path)
    where = imp.add_mutually_exclusive_group(required=True)
    where.add_argument("--stores", type=Path, help="one store per user: DIR/<user>.sqlite")
    where.add_argument("--store", type=Path, help="one store for every row")
    imp.add_argument("--source", help="the rows' source name (default import:<file name>)")
    imp.add_argument("--format", choices=sorted(READERS), help="default: from the file name")
    imp.add_argument("--parts", help=f"only users of these split parts: {','.join(PART_NAMES)}")
    imp.add_argument("--no-progress", action="store_true")
    sub.add_parser("split", help="users and swipes per part of the real swipes")
    measure.add_arguments(
        sub.add_parser(
            "measure",
            help="a checkpoint's accuracy on a file of labelled swipes",
            description=measure.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "measure":
        return measure.run(args)
    if args.command == "split":
        from fl_app.datasets.real import load_real

        rows = load_real(PART_NAMES)
        users = Counter(user_part(u) for u in {r.user for r in rows})
        swipes = Counter(r.part for r in rows)
        print(json.dumps({p: {"users": users[p], "swipes": swipes[p]} for p in PART_NAMES}))
        return 0
    try:
        summary = import_file(
            args.file,
            stores_dir=args.stores,
            store_path=args.store,
            source=args.source,
            fmt=args.format,
            parts=args.parts,
            progress=False if args.no_progress else None,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
