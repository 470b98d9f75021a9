"""Synthetic gesture-typing users: a style, a device keyboard and a non-IID vocabulary each.

A simulated person (`SyntheticUser`) is what a federation node or an evaluation set draws
swipes from: `make_user` derives everything about one user from a seed (the style from
`fl_app.synthetic.style`, a personal Zipf-like word distribution with a few rare words of their
own), `make_users` derives many from one seed, and `SyntheticUser.swipes` generates their
swipes with `fl_app.synthetic.motion`. Randomness only from seeds: the same seed gives the same
user and the same (seed, stream) the same swipes, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fl_app.decoder.keyboard import NAMED_LAYOUTS, Keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.swipe import Swipe
from fl_app.synthetic.habits import HabitBank, PersonHabits
from fl_app.synthetic.motion import generate_swipe
from fl_app.synthetic.style import UserStyle, sample_user_style

# Word choice: p(word) ~ freq ** temperature (real swipes' word lengths match about 0.8).
VOCAB_TEMPERATURE_RANGE = (0.75, 1.0)
VOCAB_NOISE_LOG_SD = 0.7  # per-user interest in each word (log-normal multiplier)
SPECIAL_WORDS_RANGE = (5, 30)  # user-specific rare words (names, hobbies)
SPECIAL_MASS_RANGE = (0.08, 0.3)  # their share of the user's words
SPECIAL_FROM_RARE_FRACTION = 0.7  # drawn from the rarer 70% of the candidate words

LANGUAGE_LAYOUT = {"en": "qwerty-en", "ru": "jcuken-ru"}


@dataclass
class SyntheticUser:
    """One simulated person: a style, a device keyboard and a personal word distribution."""

    user_id: int
    seed: int
    style: UserStyle
    keyboard: Keyboard
    words: list[str]
    weights: np.ndarray  # p(word), sums to 1
    special_words: tuple[str, ...] = ()
    regime: str = "train"
    habits: PersonHabits | None = None  # a real person's offsets to replay ...
    habit_share: float = 0.0  # ... in this share of the swipes
    _cdf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.weights = self.weights / self.weights.sum()
        self._cdf = np.cumsum(self.weights)

    def sample_words(self, n: int, rng: np.random.Generator | None = None) -> list[str]:
        """n words from the user's distribution (default rng: derived from the user's seed)."""
        rng = np.random.default_rng([self.seed, 2]) if rng is None else rng
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        idx = np.minimum(idx, len(self.words) - 1)
        return [self.words[i] for i in idx]

    def swipes(self, n: int, stream: int = 0) -> list[Swipe]:
        """n labelled swipes; the same (seed, stream) gives identical swipes, bit for bit."""
        rng = np.random.default_rng([self.seed, 3, stream])
        words = self.sample_words(n, rng)
        return [generate_swipe(w, self.keyboard, self.style, rng, self._habits(rng)) for w in words]

    def _habits(self, rng: np.random.Generator) -> PersonHabits | None:
        """The habits one swipe replays, if any (no draw at all without habits, so a user
        without them swipes exactly as before habits existed)."""
        if self.habits is None or self.habit_share <= 0.0:
            return None
        return self.habits if rng.random() < self.habit_share else None


def _candidate_words(lexicon: Lexicon, layout: str, words: Sequence[str] | None) -> np.ndarray:
    typable = _typable(lexicon, layout)
    if words is None:
        idx = typable
    else:
        allowed = set(words)
        idx = np.array([i for i in typable if lexicon.words[i] in allowed], dtype=np.int64)
    if not len(idx):
        raise ValueError("no candidate words: the lexicon and `words` leave nothing to swipe")
    return idx


_TYPABLE: dict[tuple[str, str], np.ndarray] = {}


def _typable(lexicon: Lexicon, layout: str) -> np.ndarray:
    """Indices of the lexicon's words of 2+ letters the layout can type; computed once per
    lexicon and layout (thousands of users share a 100,000-word lexicon)."""
    key = (lexicon.lexicon_id, layout)
    if key not in _TYPABLE:
        letters = set("".join(NAMED_LAYOUTS[layout]["rows"]))
        _TYPABLE[key] = np.array(
            [i for i, w in enumerate(lexicon.words) if len(w) >= 2 and set(w) <= letters],
            dtype=np.int64,
        )
    return _TYPABLE[key]


def make_user(
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: Sequence[str] | None = None,
    user_id: int | None = None,
) -> SyntheticUser:
    """A synthetic user drawn from `seed`: style, keyboard and non-IID vocabulary.

    The word distribution is Zipf-like, p ~ freq ** temperature (a per-user temperature),
    times a per-user log-normal interest in each word, mixed with a handful of the lexicon's
    rarer words at boosted weight (names, hobbies). `words` restricts the candidates (hold
    words out of training).
    """
    rng = np.random.default_rng([int(seed), 1])
    layout = LANGUAGE_LAYOUT.get(lexicon.language, "qwerty-en")
    style = sample_user_style(rng, regime, layout=layout)
    cand = _candidate_words(lexicon, layout, words)
    freqs = lexicon.freqs[cand]
    temp = rng.uniform(*VOCAB_TEMPERATURE_RANGE)
    w = np.exp(
        temp * np.log(np.maximum(freqs, 1e-12))
        + VOCAB_NOISE_LOG_SD * rng.standard_normal(len(cand))
    )
    w /= w.sum()
    order = np.argsort(-freqs, kind="stable")
    rare = order[int(len(order) * (1.0 - SPECIAL_FROM_RARE_FRACTION)) :]
    pool = rare if len(rare) else order
    k = min(int(rng.integers(SPECIAL_WORDS_RANGE[0], SPECIAL_WORDS_RANGE[1] + 1)), len(pool))
    special = rng.choice(pool, size=k, replace=False)
    mass = rng.uniform(*SPECIAL_MASS_RANGE)
    w = (1.0 - mass) * w
    w[special] += mass * rng.dirichlet(np.ones(k))
    return SyntheticUser(
        user_id=int(seed if user_id is None else user_id),
        seed=int(seed),
        style=style,
        keyboard=style.keyboard(),
        words=[lexicon.words[i] for i in cand],
        weights=w,
        special_words=tuple(lexicon.words[cand[i]] for i in special),
        regime=regime,
    )


def make_users(
    n: int,
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: Sequence[str] | None = None,
) -> list[SyntheticUser]:
    """n users with ids 0..n-1 and seeds derived from `seed` (user i is the same for any n)."""
    return list(iter_users(n, seed, lexicon, regime, words))


def iter_users(
    n: int,
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: Sequence[str] | None = None,
    habits: HabitBank | None = None,
    habit_share: float = 0.0,
    vocabulary: Mapping[str, float] | None = None,
    vocabulary_share: float = 0.0,
) -> Iterator[SyntheticUser]:
    """`make_users`, one user at a time: a user holds its whole vocabulary, so thousands of
    users over a 100,000-word lexicon should not all be alive at once. With a `habits` bank,
    each user replays one real person's offsets in `habit_share` of their swipes; with a
    `vocabulary`, each swipes its words in `vocabulary_share` of their swipes
    (`with_vocabulary`)."""
    for name, share in (("habit_share", habit_share), ("vocabulary_share", vocabulary_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], not {share}")
    for i in range(n):
        user_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        user = make_user(user_seed, lexicon, regime, words, user_id=i)
        if habits is not None:
            user.habits, user.habit_share = habits.person_for(user_seed), habit_share
        if vocabulary and vocabulary_share > 0.0:
            user = with_vocabulary(user, vocabulary, vocabulary_share)
        yield user


def with_vocabulary(
    user: SyntheticUser, vocabulary: Mapping[str, float], share: float
) -> SyntheticUser:
    """`user` choosing from `vocabulary` (words and their weights: how often real people were
    asked to swipe them) in `share` of their swipes, from their own distribution otherwise.

    Real people swipe the words they are given, and a study's prompts are not a lexicon's
    frequencies (`im` is common there, rare in text): a model learns which letters end a
    trace from the words it saw swiped. Deterministic: no random draw, so the user's style,
    keyboard and habits are untouched. Words of fewer than 2 letters, or with letters the
    keyboard lacks, are left out."""
    letters = set(user.keyboard.letter_index)
    chosen = {w: float(c) for w, c in vocabulary.items() if len(w) >= 2 and set(w) <= letters}
    if not chosen or sum(chosen.values()) <= 0:
        raise ValueError("the vocabulary holds no word this keyboard can swipe")
    # only the chosen words' places: a user holds up to 100,000 words, the study a few thousand
    position = {w: i for i, w in enumerate(user.words) if w in chosen}
    extra = [w for w in chosen if w not in position]
    words = user.words + extra
    position.update({w: i for i, w in enumerate(extra, start=len(user.words))})
    weights = np.concatenate([(1.0 - share) * user.weights, np.zeros(len(extra))])
    total = sum(chosen.values())
    for w, c in chosen.items():
        weights[position[w]] += share * c / total
    return replace(user, words=words, weights=weights)
