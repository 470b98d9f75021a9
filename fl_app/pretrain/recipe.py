"""The recipe: data, training, tuning on public-val, figures, the checkpoint.

Everything is fixed by the config (seeds, step count): two runs on the same machine give the
same weights. Choices are made on public-val only; dev figures are measured at the end and
recorded, never used.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fl_app.datasets.real import (
    CITATION,
    RealSwipe,
    load_real,
    real_swipes_file,
    stratified_sample,
)
from fl_app.datasets.real_eval import (
    CONDITIONS,
    FULL_SIZE,
    LexiconCondition,
    measure_on_real,
    tuned_template,
)
from fl_app.datasets.split import user_sample
from fl_app.decoder.discriminative import (
    DiscriminativeConfig,
    Teacher,
    fine_tune,
    mine_choices,
)
from fl_app.decoder.misses import distance_from_word
from fl_app.decoder.model import SwipeModel, count_parameters
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, model_arrays, read_model_dir
from fl_app.decoder.training import (
    AugmentedSwipes,
    MixedDataset,
    Progress,
    SwipeDataset,
    TrainConfig,
    ViewMix,
    check_ema,
    train,
)
from fl_app.decoder.tuning import tune_fusion
from fl_app.pretrain.config import PretrainConfig
from fl_app.pretrain.ctc_stage import read_stage, write_stage
from fl_app.synthetic import generator_digest
from fl_app.synthetic.habits import HabitBank, build_bank
from fl_app.synthetic.users import iter_users

SHIPPED = LexiconCondition(FULL_SIZE, False)
LICENCE_NOTE = (
    "Trained on synthetic swipes and on real swipes of the public-train users of the How We "
    "Swipe dataset (" + CITATION + "); the lexicon derives from wordfreq (CC BY-SA 4.0, "
    "Robyn Speer and contributors)."
)


def decoder_spec(cfg: PretrainConfig) -> DecoderSpec:
    m = cfg.model
    return DecoderSpec(
        language="en",
        lexicon_size=cfg.data.lexicon_size,
        conv_channels=m.conv_channels,
        hidden=m.hidden,
        gru_layers=m.gru_layers,
        dropout=m.dropout,
        resample=m.resample,
    )


@dataclass(frozen=True)
class Calibration:
    """What the synthetic users take from real people (read once per run, used by both
    stages): their replayed offsets and the words they were asked for. Never their traces."""

    habits: HabitBank | None
    vocabulary: dict[str, int] | None


def calibration(cfg: PretrainConfig) -> Calibration:
    """The recipe's `Calibration` (`data.habits_from`, `data.vocabulary_from`)."""
    return Calibration(habit_bank(cfg), prompt_vocabulary(cfg))


def synthetic_swipes(
    cfg: PretrainConfig,
    spec: DecoderSpec,
    users: int,
    seed: int,
    calibrated: Calibration,
) -> list:
    """`users` synthetic users of `seed` over the spec's lexicon, each with the recipe's
    swipes per user (the CTC training's users, and the word-level stage's fresh ones)."""
    made = iter_users(
        users,
        seed,
        spec.lexicon(),
        habits=calibrated.habits,
        habit_share=cfg.data.habit_share,
        vocabulary=calibrated.vocabulary,
        vocabulary_share=cfg.data.vocabulary_share,
    )
    return [s for u in made for s in u.swipes(cfg.data.synthetic_swipes_per_user)]


def _learnable(setting: str, parts: list[str]) -> list[str]:
    """`parts` if the recipe may learn from them all: public-val and dev never (choices are
    made on the one, figures reported on the other)."""
    held_out = sorted(set(parts) & {"public-val", "dev"})
    if held_out:
        raise ValueError(f"data.{setting} may not name {held_out}: choices are made on them")
    return parts


def habit_bank(cfg: PretrainConfig) -> HabitBank | None:
    """The real people whose offsets the synthetic users replay (None: `data.habits_from` is
    empty). Only parts the recipe may learn from belong here."""
    parts = _learnable("habits_from", list(cfg.data.habits_from))
    if not parts:
        return None
    return build_bank((r.user, r.swipe) for r in load_real(parts))


def prompt_vocabulary(cfg: PretrainConfig) -> dict[str, int] | None:
    """How often each word was asked for in `data.vocabulary_from`'s rows (None: empty): the
    words the synthetic users also swipe. Only parts the recipe may learn from."""
    parts = _learnable("vocabulary_from", list(cfg.data.vocabulary_from))
    if not parts:
        return None
    return dict(sorted(Counter(r.swipe.word for r in load_real(parts)).items()))


def vocabulary_record(
    cfg: PretrainConfig, vocabulary: dict[str, int] | None
) -> dict[str, Any] | None:
    """What the manifest says about the prompted words the synthetic users swipe."""
    if vocabulary is None:
        return None
    text = json.dumps(vocabulary, separators=(",", ":")).encode()
    return {
        "from": list(cfg.data.vocabulary_from),
        "share": cfg.data.vocabulary_share,
        "words": len(vocabulary),
        "swipes": sum(vocabulary.values()),
        "sha256": hashlib.sha256(text).hexdigest(),
    }


def habits_record(cfg: PretrainConfig, bank: HabitBank | None) -> dict[str, Any] | None:
    """What the manifest says about the replayed habits."""
    if bank is None:
        return None
    return {
        "from": list(cfg.data.habits_from),
        "share": cfg.data.habit_share,
        "people": len(bank),
        "swipes": bank.swipes,
        "sha256": bank.digest,
    }


def real_training_rows(cfg: PretrainConfig) -> list[RealSwipe]:
    """The real parts' rows, of at most `data.real_users` people (a seeded sample), without
    those lying `data.real_max_distance` or farther from their word's keys (when set)."""
    limit = cfg.data.real_max_distance
    if not limit >= 0:  # NaN too
        raise ValueError(f"data.real_max_distance must be >= 0 (0: keep all), got {limit}")
    if not cfg.data.real_parts:
        return []
    rows = load_real(cfg.data.real_parts)
    users = user_sample({r.user for r in rows}, cfg.data.real_users, cfg.seed)
    rows = [r for r in rows if r.user in users]
    if limit:
        rows = [
            r
            for r in rows
            if distance_from_word(r.swipe.points, r.swipe.keyboard, r.swipe.word) < limit
        ]
    return rows


def real_digest(rows: list[RealSwipe]) -> str:
    """Which real rows the model saw: users and seqs, hashed (the rows themselves stay out)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.user}:{r.seq}\n".encode())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cfg: PretrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, tune and measure; returns (tensors, manifest) in a dict and writes nothing."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    t0 = time.perf_counter()
    spec = decoder_spec(cfg)
    check_ema(cfg.train.ema)  # refused now, not when training starts after the data
    share = cfg.data.other_view_share
    # Made first, so a share outside [0, 1] is refused before minutes of data generation.
    synthetic_views = ViewMix(spec.features, share, cfg.seed) if share else None
    real_views = ViewMix(spec.features, share, cfg.seed + 1) if share else None
    # Loaded first too: a missing or mismatched teacher, or a CTC stage made with other
    # settings, is refused before an hour of training.
    teachers = load_teachers(cfg.discriminative, spec)
    stage = read_stage(cfg.ctc_stage_from, cfg) if cfg.ctc_stage_from else None
    real = real_training_rows(cfg)
    val = _limited(load_real("public-val"), cfg)
    calibrated = calibration(cfg)
    if stage is None:
        model, ctc = _ctc_stage(cfg, spec, real, calibrated, (synthetic_views, real_views), log)
        if cfg.ctc_stage_out:
            ctc["sha256"] = write_stage(cfg.ctc_stage_out, cfg, spec, model, ctc)
            ctc["dir"] = cfg.ctc_stage_out
            log(f"wrote the CTC stage to {cfg.ctc_stage_out}")
    else:
        model, ctc = stage
        log(f"CTC stage from {ctc['dir']} (sha256 {ctc['sha256'][:12]}): no CTC training")

    # Decoding weights for the shipped lexicon, chosen on public-val.
    d = cfg.decoding
    params = tuned_template(SHIPPED, val, coarse_keep=d.coarse_keep)
    start = replace(spec.fusion, wide=d.wide, shortlist=d.shortlist)
    decoder = LearnedDecoder(model, spec.features, SHIPPED.build([]), params, start)
    decoder.fusion, _ = tune_fusion(decoder, [r.swipe for r in val])
    word_level = None
    if cfg.discriminative.steps and (real or cfg.discriminative.synthetic_users):
        word_level = word_level_stage(cfg, spec, model, decoder, real, calibrated, teachers, log)
        decoder.fusion, _ = tune_fusion(decoder, [r.swipe for r in val])  # the model moved
    spec = replace(spec, template=params, fusion=decoder.fusion)

    conditions = CONDITIONS
    figures = {"public_val": _figures(spec, model, val, val, conditions, log)}
    if cfg.evaluate_dev:
        figures["dev"] = _figures(
            spec, model, _limited(load_real("dev"), cfg), val, conditions, log
        )
    wall = time.perf_counter() - t0
    manifest = {
        "decoder": spec.to_manifest(),
        "lexicon_id": spec.lexicon().lexicon_id,
        "kind": "base",
        "recipe": {"command": "python -m fl_app.pretrain", "config": asdict(cfg)},
        "data": {
            "real": {
                "file_sha256": file_digest(real_swipes_file()),
                "parts": list(cfg.data.real_parts),
                "users": len({r.user for r in real}),
                "swipes": len(real),
                "rows_sha256": real_digest(real),
            },
            "synthetic": {
                "users": cfg.data.synthetic_users,
                "swipes": ctc["synthetic_swipes"],
                "seed": cfg.data.synthetic_seed,
                "generator_sha256": generator_digest(),
                "habits": habits_record(cfg, calibrated.habits),
                "vocabulary": vocabulary_record(cfg, calibrated.vocabulary),
            },
        },
        "metrics": figures,
        "train": {
            "steps": ctc["steps"],
            "final_loss": ctc["final_loss"],
            "parameters": count_parameters(model),
            "seconds": {**ctc["seconds"], "total": wall},
            "threads": torch.get_num_threads(),
            "word_level": word_level,
            **({"ctc_stage": _stage_reference(ctc)} if "dir" in ctc else {}),
        },
        "citation": CITATION,
        "licence_note": LICENCE_NOTE,
    }
    return {"tensors": model_arrays(model), "manifest": manifest, "model": model, "spec": spec}


def _ctc_stage(
    cfg: PretrainConfig,
    spec: DecoderSpec,
    real: list[RealSwipe],
    calibrated: Calibration,
    views: tuple[ViewMix | None, ViewMix | None],
    log: Callable[[str], None],
) -> tuple[SwipeModel, dict[str, Any]]:
    """CTC training on synthetic users plus the real rows (repeated, augmented): the model, and
    what the manifest says of the stage."""
    t0 = time.perf_counter()
    synthetic_views, real_views = views
    synthetic = synthetic_swipes(
        cfg, spec, cfg.data.synthetic_users, cfg.data.synthetic_seed, calibrated
    )
    n_synthetic = len(synthetic)
    parts, repeats = [], []
    if synthetic:
        parts.append(SwipeDataset.from_swipes(synthetic, spec.features, synthetic_views))
        repeats.append(1)
    del synthetic  # the features are all training needs
    if real:
        augmented = AugmentedSwipes(
            [r.swipe for r in real],
            spec.features,
            cfg.data.augment,
            seed=cfg.seed,
            views=real_views,
        )
        parts.append(augmented)
        repeats.append(cfg.data.real_repeats)
    data = MixedDataset(parts, repeats)
    t_data = time.perf_counter() - t0
    log(f"data: {n_synthetic} synthetic + {len(real)} real swipes ({t_data:.0f} s)")

    model = spec.build_model(seed=cfg.seed, device=torch.device("cpu"))
    tc = cfg.train
    config = TrainConfig(
        steps=tc.steps,
        lr=tc.lr,
        batch_size=tc.batch_size,
        weight_decay=tc.weight_decay,
        grad_clip=tc.grad_clip,
        warmup_steps=tc.warmup_steps,
        cosine=True,
        ema=tc.ema,
        seed=cfg.seed,
    )
    t1 = time.perf_counter()

    def progress(p: Progress) -> None:
        if p.step % 500 == 0 or p.step == p.total_steps:
            log(
                f"  step {p.step}/{p.total_steps} loss {p.loss:.3f} ({time.perf_counter() - t1:.0f} s)"
            )

    result = train(model, data, config, progress=progress)
    record = {
        "steps": result.steps,
        "final_loss": result.loss,
        "seconds": {"data": t_data, "train": time.perf_counter() - t1},
        "threads": torch.get_num_threads(),
        "synthetic_swipes": n_synthetic,
    }
    return model, record


def _stage_reference(ctc: dict[str, Any]) -> dict[str, Any]:
    """Where the CTC stage was written or read, for the manifest."""
    return {"dir": ctc["dir"], "sha256": ctc["sha256"], "threads": ctc["threads"]}


def word_level_stage(
    cfg: PretrainConfig,
    spec: DecoderSpec,
    model: SwipeModel,
    decoder: LearnedDecoder,
    real: list[RealSwipe],
    calibrated: Calibration,
    teachers: tuple[list[Teacher], list[dict[str, Any]]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Mine each training swipe's close calls with the tuned decoder, then fine-tune the model
    on them (fl_app/decoder/discriminative.py): the real people the model trained on, and
    fresh synthetic users of their own seed."""
    dc = cfg.discriminative
    models, records = teachers
    t0 = time.perf_counter()
    real_choices = mine_choices(decoder, [r.swipe for r in real], dc.candidates)
    synthetic = synthetic_swipes(cfg, spec, dc.synthetic_users, dc.synthetic_seed, calibrated)
    synthetic_choices = mine_choices(decoder, synthetic, dc.candidates)
    t_mine = time.perf_counter() - t0
    log(
        f"word level: {len(real_choices)}/{len(real)} real and "
        f"{len(synthetic_choices)}/{len(synthetic)} synthetic swipes mined ({t_mine:.0f} s)"
    )

    def progress(step: int, ctc: float, word: float) -> None:
        if step % 500 == 0 or step == dc.steps:
            log(f"  word-level step {step}/{dc.steps} ctc {ctc:.3f} word {word:.3f}")

    result = fine_tune(
        model,
        spec.features,
        real_choices,
        synthetic_choices,
        dc,
        cfg.data.augment,
        seed=cfg.seed,
        progress=progress,
        teachers=models,
    )
    return {
        **result,
        "teachers": records,
        "mined": {"real": len(real_choices), "synthetic": len(synthetic_choices)},
        "offered": {"real": len(real), "synthetic": len(synthetic)},
        "mining_seconds": t_mine,
    }


def load_teachers(
    dc: DiscriminativeConfig, spec: DecoderSpec
) -> tuple[list[Teacher], list[dict[str, Any]]]:
    """The word-level stage's teachers (`dc.teachers`: checkpoint folders, verified as a release
    is) and what the manifest says of them. A teacher must spell words as the student does: its
    lexicon and language are the student's; its architecture and frames may differ."""
    if dc.teachers and not 0.0 <= dc.teacher_share <= 1.0:
        raise ValueError(f"teacher_share must be within [0, 1], got {dc.teacher_share}")
    teachers, records = [], []
    for directory in dc.teachers:
        theirs, model, manifest = read_model_dir(directory)
        if (theirs.language, theirs.lexicon_size) != (spec.language, spec.lexicon_size):
            raise ValueError(
                f"teacher {directory} decodes {theirs.lexicon_size} {theirs.language!r} words; "
                f"the recipe's model {spec.lexicon_size} {spec.language!r} words"
            )
        teachers.append(Teacher(model, theirs.features))
        records.append(
            {
                "dir": str(directory),
                "sha256": manifest["sha256"],
                "resample": theirs.resample,
            }
        )
    return teachers, records


def _figures(spec, model, swipes, val, conditions, log) -> dict[str, dict[str, float]]:
    """top-1/top-4/MRR under each lexicon condition, weights re-tuned on `val` per condition
    (the shipped condition uses the spec's own weights, as a device would)."""
    out: dict[str, dict[str, float]] = {}
    for fig in measure_on_real({"base": (spec, model)}, swipes, val, conditions, False, log):
        out[fig.condition] = {**fig.metrics, "top1_ci": list(fig.top1_ci)}
    return out


def _limited(rows: list[RealSwipe], cfg: PretrainConfig) -> list[RealSwipe]:
    return stratified_sample(rows, cfg.eval_swipes, seed=cfg.seed) if cfg.eval_swipes else rows
