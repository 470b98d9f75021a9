"""Synthetic swipers: the generator's users, its statistics beside real swipes, and the
centralized training/evaluation runs built on them (the reference a federation is compared with).

The generator is four modules: `style` (who swipes how, on which device), `habits` (real
people's offsets, measured from their traces, to replay), `motion` (how the finger moves, one
trace) and `users` (a person's vocabulary, their swipes). `generator_digest`
fingerprints their source, so whatever records or caches generated swipes (the federation's
cached stores, the pretraining manifest) notices any change to the generator.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

# The generator's modules, in the fixed order their sources are hashed.
GENERATOR_MODULES = ("style.py", "habits.py", "motion.py", "users.py")


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """sha256 (hex) of the generator's source: every module in GENERATOR_MODULES, in order.

    Each module contributes its file name and length before its bytes, so moving code between
    modules changes the digest too. Reads the files; imports nothing.
    """
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in GENERATOR_MODULES:
        source = (here / name).read_bytes()
        digest.update(f"{name}\0{len(source)}\0".encode())
        digest.update(source)
    return digest.hexdigest()
