"""Real people's placement habits, measured from their traces, for the generator to replay.

The parametric style (`fl_app.synthetic.style`) matches real swipes' marginals, yet a decoder
trained on it still loses most on the sloppiest real traces (bench/results/sim-to-real-gap.md):
what it misses is how sloppiness relates to the word. This module measures, on each labelled
real swipe, where the finger was relative to the word's keys *in the frame of the movement*:

- the start, relative to the first key, on the screen (where a finger lands is a matter of
  hand and screen: mostly below the key, whichever way the word goes);
- the end, relative to the last key, along (overshoot > 0, stopping short < 0) and across the
  last movement;
- each interior letter's closest approach, along and across the movement into it (corner
  cutting, drift in the middle of a word).

`HabitBank` holds them per real person; `PersonHabits.draw` gives one real swipe's start and
end together (they move together: a hurried swipe starts and ends loose) and corner offsets of
the same person, rotated onto a new word's movements by `fl_app.synthetic.motion`. Offsets are
in key widths in both axes, like the rest of the generator. Only traces of users the model may
learn from belong in a bank (the recipe uses public-train).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fl_app.decoder.features import collapse_repeats
from fl_app.decoder.swipe import Swipe

MIN_SWIPES_PER_PERSON = 5  # fewer, and a person's habits are too thin to replay


def movement_frames(points: np.ndarray) -> np.ndarray:
    """(m, 2, 2) rotation into each movement's frame: row 0 along p[i+1] - p[i], row 1 across
    (the along axis turned a quarter clockwise on screen, y down). Zero-length moves keep +x."""
    d = np.diff(points, axis=0)
    n = np.hypot(d[:, 0], d[:, 1])
    unit = np.where(n[:, None] > 1e-9, d / np.maximum(n, 1e-9)[:, None], [1.0, 0.0])
    across = np.column_stack([-unit[:, 1], unit[:, 0]])
    return np.stack([unit, across], axis=1)


def monotone_alignment(xy: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices into `xy` (n, 2), one per target (k, 2), never decreasing, that minimise the
    summed distance: where the trace passes each letter, in the word's order (a greedy
    nearest point can jump to a later pass and push every following letter to the end)."""
    k = len(targets)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    cost = np.hypot(xy[None, :, 0] - targets[:, None, 0], xy[None, :, 1] - targets[:, None, 1])
    best = cost[0].copy()
    came_from = np.zeros((k, len(xy)), dtype=np.int64)
    idx = np.arange(len(xy))
    for i in range(1, k):
        # the previous letter's best at or before each point: a running minimum
        is_new = np.concatenate(([True], best[1:] < np.minimum.accumulate(best)[:-1]))
        run_arg = np.maximum.accumulate(np.where(is_new, idx, 0))
        came_from[i] = run_arg
        best = cost[i] + best[run_arg]
    out = np.empty(k, dtype=np.int64)
    out[-1] = int(np.argmin(best))
    for i in range(k - 1, 0, -1):
        out[i - 1] = came_from[i, out[i]]
    return out


@dataclass(frozen=True)
class SwipeHabit:
    """One real swipe's offsets (kw) in its movements' frames."""

    start: np.ndarray  # (2,) x, y on the screen
    end: np.ndarray  # (2,) along, across the last movement
    corners: np.ndarray  # (k, 2) interior letters' closest approach, k may be 0


def measure_habit(swipe: Swipe) -> SwipeHabit | None:
    """The swipe's offsets, or None for a word with fewer than two distinct via letters."""
    if not swipe.word:
        raise ValueError("habits need labelled swipes")
    aimed = collapse_repeats(swipe.word)  # repeated letters are one via-point
    if len(aimed) < 2:
        return None
    kw = swipe.keyboard.key_width
    centres = swipe.keyboard.word_centres(aimed) / kw
    xy = np.asarray(swipe.points, dtype=np.float64)[:, :2] / kw
    frames = movement_frames(centres)
    start = xy[0] - centres[0]
    end = frames[-1] @ (xy[-1] - centres[-1])
    inner = centres[1:-1]
    approach = xy[monotone_alignment(xy, inner)] - inner
    corners = np.einsum("kdc,kc->kd", frames[:-1], approach)
    return SwipeHabit(start, end, corners)


@dataclass(frozen=True)
class PersonHabits:
    """One real person's measured offsets: starts and ends per swipe, all their corners."""

    starts: np.ndarray  # (n, 2)
    ends: np.ndarray  # (n, 2)
    corners: np.ndarray  # (c, 2)

    def draw(self, n_corners: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """A start and an end of one of the person's swipes, and `n_corners` of their corner
        offsets (drawn with replacement; zeros if they have none)."""
        i = int(rng.integers(len(self.starts)))
        if len(self.corners):
            corners = self.corners[rng.integers(len(self.corners), size=n_corners)]
        else:
            corners = np.zeros((n_corners, 2))
        return self.starts[i], self.ends[i], corners


@dataclass(frozen=True)
class HabitBank:
    """Real people's habits, in a fixed order (their user ids sorted)."""

    people: tuple[PersonHabits, ...]
    digest: str  # sha256 of every offset: what a manifest records about the bank

    def __len__(self) -> int:
        return len(self.people)

    def person_for(self, seed: int) -> PersonHabits:
        """The real person whose habits a synthetic user of `seed` replays."""
        return self.people[int(seed) % len(self.people)]

    @property
    def swipes(self) -> int:
        return sum(len(p.starts) for p in self.people)


def build_bank(rows: Iterable[tuple[str, Swipe]]) -> HabitBank:
    """A bank from (person id, labelled swipe) pairs; people with fewer than
    MIN_SWIPES_PER_PERSON measurable swipes are left out."""
    by_person: dict[str, list[SwipeHabit]] = {}
    for person, swipe in rows:
        habit = measure_habit(swipe)
        if habit is not None:
            by_person.setdefault(person, []).append(habit)
    people = [
        _person(habits)
        for _, habits in sorted(by_person.items())
        if len(habits) >= MIN_SWIPES_PER_PERSON
    ]
    if not people:
        raise ValueError(
            f"no person has {MIN_SWIPES_PER_PERSON}+ measurable swipes: nothing to replay"
        )
    digest = hashlib.sha256()
    for p in people:
        for arr in (p.starts, p.ends, p.corners):
            digest.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
            digest.update(b"|")
    return HabitBank(tuple(people), digest.hexdigest())


def _person(habits: Sequence[SwipeHabit]) -> PersonHabits:
    return PersonHabits(
        starts=np.array([h.start for h in habits]),
        ends=np.array([h.end for h in habits]),
        corners=np.concatenate([h.corners for h in habits]),
    )
