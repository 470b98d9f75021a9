"""Derive the committed word-pair table fl_app/decoder/data/word-pairs-en.tsv.gz and its manifest
from symspellpy's counts (Google Books Ngram data, CC BY 3.0).

Run: pip install -e '.[context]' && python scripts/make_word_pairs.py --share S --weight W
Keeps the pairs whose two words the 100,000-word English lexicon holds, as P(w | previous) / P(w)
(fl_app/decoder/context.py). The share and weight are the ones `python bench/context_prior.py
--corpora shipped` chose on public-val for the shipped base under the lexicon as shipped; the
manifest records them, so the table and what a sidecar adds with it travel together.
"""

from __future__ import annotations

import argparse
import json
import sys

from fl_app.decoder.context import package_prior, shipped_settings, shipped_table
from fl_app.decoder.lexicon import load_lexicon

PACKAGE = "symspellpy"
LEXICON_SIZE = 100_000
SOURCE = (
    "symspellpy's frequency_bigramdictionary_en_243_342.txt and frequency_dictionary_en_82_765.txt "
    "(https://pypi.org/project/symspellpy/, MIT; the counts are Google Books Ngram data, "
    "Creative Commons Attribution 3.0 Unported)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", type=float, required=True)
    parser.add_argument("--weight", type=float, required=True)
    args = parser.parse_args(argv)
    vocabulary = set(load_lexicon("en", LEXICON_SIZE).words)
    try:
        prior = package_prior(PACKAGE, vocabulary)
    except ModuleNotFoundError as exc:
        sys.exit(str(exc))
    table = shipped_table("en")
    manifest = {
        "source": SOURCE,
        "licence": "CC BY 3.0 (the counts); this table is derived from them",
        "kept": f"pairs of words in the {LEXICON_SIZE:,}-word English lexicon",
        "pairs": len(prior),
        "sha256": prior.write(table),
        "share": args.share,
        "weight": args.weight,
        "chosen_by": "python bench/context_prior.py --corpora shipped (100k as shipped, public-val)",
        "made_by": "python scripts/make_word_pairs.py "
        f"--share {args.share:g} --weight {args.weight:g}",
    }
    shipped_settings("en").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{table}: {len(prior)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
