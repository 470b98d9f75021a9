"""The user's own words: kept on the device (a JSON file), added to every decoder's lexicon.

File ``<device_dir>/words.json``: ``{"format_version": 1, "words": {"en": {"word": freq}}}``,
written atomically. Words are data, not model: the decoder scores any letter sequence, so a
word is decodable as soon as it is in the lexicon (``fl_app.decoder.lexicon.Lexicon.with_words``).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from fl_app.checkpoints.format import write_atomic
from fl_app.decoder.keyboard import LANGUAGE_ALPHABETS
from fl_app.decoder.lexicon import DEFAULT_ADDED_FREQ

from ..errors import ApiError

log = logging.getLogger("serve.words")

FORMAT_VERSION = 1
MAX_WORD_LEN = 48


class PersonalWords:
    def __init__(self, path: Path, max_words: int = 5000) -> None:
        self.path = Path(path)
        self.max_words = max_words
        self._lock = threading.Lock()
        self._words: dict[str, dict[str, float]] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            words = data.get("words", {})
            self._words = {
                lang: {str(w): float(f) for w, f in entries.items()}
                for lang, entries in words.items()
                if lang in LANGUAGE_ALPHABETS and isinstance(entries, dict)
            }
        except FileNotFoundError:
            self._words = {}
        except (OSError, ValueError, AttributeError, TypeError):
            log.warning("personal words file unreadable; starting empty")
            self._words = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"format_version": FORMAT_VERSION, "words": self._words}, sort_keys=True)
        write_atomic(self.path, data.encode("utf-8"))

    def words_for(self, language: str) -> dict[str, float]:
        with self._lock:
            return dict(self._words.get(language, {}))

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._words.values())

    def add(
        self, language: str, words: list[str], freq: float | None = None
    ) -> tuple[dict[str, float], int]:
        """Validate and keep ``words``; returns (the newly added ones, total for the language)."""
        alphabet = LANGUAGE_ALPHABETS.get(language)
        if alphabet is None:
            raise ApiError("INVALID_WORD", f"unknown language {language!r}", reason="LANGUAGE")
        letters = set(alphabet)
        for i, word in enumerate(words):
            # The message names the position only: typed words stay out of answers and logs.
            if not (1 <= len(word) <= MAX_WORD_LEN) or not set(word) <= letters:
                raise ApiError(
                    "INVALID_WORD",
                    f"words[{i}] must be 1..{MAX_WORD_LEN} lower-case letters of the "
                    f"{language!r} alphabet",
                    index=i,
                )
        value = DEFAULT_ADDED_FREQ if freq is None else float(freq)
        with self._lock:
            known = self._words.get(language, {})
            new = {w: value for w in dict.fromkeys(words) if w not in known}
            if sum(len(v) for v in self._words.values()) + len(new) > self.max_words:
                raise ApiError(
                    "PAYLOAD_TOO_LARGE", f"at most {self.max_words} personal words are kept"
                )
            if new:
                self._words[language] = {**known, **new}
                try:
                    self._save()
                except OSError:
                    self._words[language] = known
                    raise
            return new, len(known) + len(new)
