"""The pretraining recipe's settings, typed (composed by Hydra from conf/pretrain.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fl_app.decoder.augment import AugmentConfig
from fl_app.decoder.discriminative import DiscriminativeConfig


@dataclass
class ModelSettings:
    conv_channels: int = 128
    hidden: int = 128
    gru_layers: int = 2
    dropout: float = 0.1
    resample: str = "time"  # frames uniform in time or along the path (features.RESAMPLE_MODES)


@dataclass
class DataSettings:
    lexicon_size: int = 100_000  # the shipped lexicon (and the synthetic users' vocabulary)
    synthetic_users: int = 3000
    synthetic_swipes_per_user: int = 60
    synthetic_seed: int = 1
    # real parts whose traces the synthetic users' via-points replay (fl_app/synthetic/habits.py;
    # empty: the parametric style only), and in which share of their swipes
    habits_from: list[str] = field(default_factory=list)
    habit_share: float = 0.7
    # real parts whose prompted words (how often each was asked for) the synthetic users also
    # swipe, and in which share of their swipes (fl_app/synthetic/users.with_vocabulary;
    # empty: the lexicon's frequencies only). Words, never traces: a twin stays synthetic-only
    vocabulary_from: list[str] = field(default_factory=list)
    vocabulary_share: float = 0.5
    real_parts: list[str] = field(default_factory=lambda: ["public-train"])
    real_repeats: int = 4  # real swipes seen this many times per synthetic pass
    # at most this many of the real parts' people (0: all), a seeded sample: a learning curve
    # over people (docs/pretraining.md, "fewer real people")
    real_users: int = 0
    # drop real swipes whose trace lies this far or farther (key units, mean along the path)
    # from their word's keys: labels no trace supports (fl_app/decoder/misses.py; 0: keep all)
    real_max_distance: float = 0.0
    # share of training examples whose frames are laid out the other way (along the path for
    # a model.resample=time model): one network that reads both views (training.ViewMix)
    other_view_share: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class DecodingSettings:
    """The candidate cuts (the weights are tuned on public-val): a 100,000-word lexicon leaves
    thousands of words near a trace's ends."""

    coarse_keep: int = 2000  # template candidates after the coarse location pass
    wide: int = 800  # ... of which the best by template score reach the model's cut
    shortlist: int = 96  # ... which keeps this many for CTC scoring


@dataclass
class TrainSettings:
    steps: int = 10_000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema: float = 0.0  # decay of the weight average the CTC stage ends with (0: its last step)
    threads: int = 1  # torch threads (0: all cores); one gives the same weights on any machine


@dataclass
class PretrainConfig:
    seed: int = 0
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    # after CTC training and tuning: the word-level stage (fl_app/decoder/discriminative.py)
    discriminative: DiscriminativeConfig = field(default_factory=DiscriminativeConfig)
    out: str = "outputs/pretrain"  # the checkpoint folder (model.safetensors + manifest.json)
    # also write the CTC stage's weights here, or start from a stage written so (skipping CTC
    # training: a word-level experiment in minutes); "" for neither (fl_app/pretrain/ctc_stage.py)
    ctc_stage_out: str = ""
    ctc_stage_from: str = ""
    evaluate_dev: bool = True  # report the dev users' figures (never used to choose anything)
    eval_swipes: int = 0  # at most this many swipes of public-val and of dev (0: all of them)
