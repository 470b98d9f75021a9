"""Derive the committed lexicons in fl_app/decoder/data/ from wordfreq (CC BY-SA 4.0).

Run: pip install wordfreq && python scripts/make_lexicon.py
Keeps words of 2+ letters of the language's keyboard alphabet, most frequent first.
"""

from __future__ import annotations

from pathlib import Path

from wordfreq import top_n_list, word_frequency

from fl_app.decoder.keyboard import LANGUAGE_ALPHABETS

OUT = Path(__file__).resolve().parents[1] / "fl_app" / "decoder" / "data"
SIZE = {"en": 100_000, "ru": 20_000}  # words per language: enough to type with (docs/data.md)
NORMALISE = {"ru": str.maketrans({"ё": "е", "ъ": "ь"})}


def build(language: str, size: int | None = None) -> list[tuple[str, float]]:
    """The `size` (default: the committed file's) most frequent words with their frequency."""
    alphabet = set(LANGUAGE_ALPHABETS[language])
    table = NORMALISE.get(language)
    size = size or SIZE[language]
    seen: dict[str, float] = {}
    for raw in top_n_list(language, size * 3, wordlist="large"):
        word = raw.lower().translate(table) if table else raw.lower()
        if len(word) < 2 or not set(word) <= alphabet:
            continue
        seen[word] = seen.get(word, 0.0) + word_frequency(raw, language)
        if len(seen) >= size:
            break
    return sorted(seen.items(), key=lambda kv: -kv[1])


def main() -> None:
    for language in LANGUAGE_ALPHABETS:
        rows = build(language)
        path = OUT / f"lexicon-{language}.tsv"
        with path.open("w", encoding="utf-8") as fh:
            fh.write(f"# {language} swipe lexicon: word<TAB>frequency, derived from wordfreq 3.x\n")
            fh.write(
                "# (c) Robyn Speer / wordfreq contributors, CC BY-SA 4.0; see fl_app/decoder/data/NOTICE\n"
            )
            for word, freq in rows:
                fh.write(f"{word}\t{freq:.4e}\n")
        print(f"{path}: {len(rows)} words")


if __name__ == "__main__":
    main()
