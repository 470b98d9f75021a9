"""Synthetic users' data for simulations: cached swipe stores and the held-out evaluation set.

Simulated node p trains on synthetic user ``data.seed + p``. Its swipes are generated once into
a swipe store (the same SQLite store a device's sidecar fills) and cached under an absolute
directory; later rounds and runs reuse the file, so a node's training marker persists like a
device's. Held-out users for centralized evaluation are never any node's user.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from fl_app.decoder.lexicon import Lexicon, load_lexicon
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.swipe import Swipe
from fl_app.swipes.store import SwipeStore
from fl_app.synthetic import generator_digest

# Cached stores are keyed by this and by a hash of the generator's source (all its modules, see
# `fl_app.synthetic.generator_digest`), so a changed generator never serves stale swipes (old
# files are left behind; delete the cache to reclaim).
GENERATOR_VERSION = 1


@lru_cache(maxsize=1)
def generator_id() -> str:
    return f"g{GENERATOR_VERSION}-{generator_digest()[:10]}"


@lru_cache(maxsize=4)
def lexicon_for(language: str, size: int) -> Lexicon:
    return load_lexicon(language, size)


def spec_lexicon(spec: DecoderSpec) -> Lexicon:
    return lexicon_for(spec.language, spec.lexicon_size)


def synthetic_store_path(
    cache_dir: str | os.PathLike[str], spec: DecoderSpec, seed: int, n: int, regime: str = "train"
) -> Path:
    lexicon_id = spec_lexicon(spec).lexicon_id
    name = f"user-{lexicon_id}-{regime}-s{seed}-n{n}-{generator_id()}.sqlite"
    return Path(cache_dir) / name


def ensure_synthetic_store(
    cache_dir: str | os.PathLike[str], spec: DecoderSpec, seed: int, n: int, regime: str = "train"
) -> Path:
    """The cached store of synthetic user `seed` with `n` swipes; generated on first use.

    Generation writes a temporary file and renames it into place, so concurrent nodes (or runs)
    never see a half-filled store; the loser of a race just discards its copy.
    """
    if not Path(cache_dir).is_absolute():
        raise ValueError(f"the synthetic data cache dir must be absolute, got {cache_dir!r}")
    path = synthetic_store_path(cache_dir, spec, seed, n, regime)
    if path.exists():
        return path
    from fl_app.synthetic.users import make_user

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        user = make_user(seed, spec_lexicon(spec), regime=regime)
        with SwipeStore(tmp) as store:
            store.append_many(user.swipes(n), source="synthetic")
        if not path.exists():
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return path


def heldout_swipes(
    spec: DecoderSpec, seed: int, users: int, per_user: int, regime: str = "train"
) -> list[Swipe]:
    """Swipes of `users` held-out synthetic users (seeds seed, seed+1, ...), in memory."""
    from fl_app.synthetic.users import make_user

    lexicon = spec_lexicon(spec)
    out: list[Swipe] = []
    for i in range(users):
        out.extend(make_user(seed + i, lexicon, regime=regime).swipes(per_user))
    return out
