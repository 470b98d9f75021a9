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
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

from fl_app.decoder.context import WordPairPrior, shipped_settings, shipped_table
from fl_app.decoder.lexicon import load_lexicon

PACKAGE = "symspellpy"
UNIGRAMS = "frequency_dictionary_en_82_765.txt"
PAIRS = "frequency_bigramdictionary_en_243_342.txt"
LEXICON_SIZE = 100_000
SOURCE = (
    "symspellpy's frequency_bigramdictionary_en_243_342.txt and frequency_dictionary_en_82_765.txt "
    "(https://pypi.org/project/symspellpy/, MIT; the counts are Google Books Ngram data, "
    "Creative Commons Attribution 3.0 Unported)"
)


def counts_folder() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{PACKAGE} is not installed: pip install -e '.[context]'")
    return Path(spec.submodule_search_locations[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", type=float, required=True)
    parser.add_argument("--weight", type=float, required=True)
    args = parser.parse_args(argv)
    folder = counts_folder()
    vocabulary = set(load_lexicon("en", LEXICON_SIZE).words)
    prior = WordPairPrior.from_counts(folder / UNIGRAMS, folder / PAIRS, vocabulary)
    table = shipped_table("en")
    prior.write(table)
    manifest = {
        "source": SOURCE,
        "licence": "CC BY 3.0 (the counts); this table is derived from them",
        "kept": f"pairs of words in the {LEXICON_SIZE:,}-word English lexicon",
        "pairs": len(prior),
        "sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
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
