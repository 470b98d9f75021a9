"""What a manifest's decoder section may ask for, checked before anything is allocated.

A manifest comes from a checkpoint store the device does not control, and its decoder section
says how big a model to build: trusted, ``hidden=16384`` would allocate tens of GB before any
shape was compared. ``read_decoder_section`` type-checks the section, ``check_spec`` bounds
every size (the parameter count is computed from the sizes, no module is built). Both raise
``DecoderSpecError`` with a stable ``reason``:

- ``spec_malformed``: a missing field, a wrong type, an unknown spec version, language or key;
- ``model_too_large``: more parameters than ``MAX_PARAMETERS``;
- ``spec_out_of_range``: a size or weight outside its range (``INT_RANGES``, ``FLOAT_RANGES``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from fl_app.decoder.features import FRAME_MS, RESAMPLE_MODES, FeatureSpec
from fl_app.decoder.keyboard import LANGUAGE_ALPHABETS
from fl_app.decoder.model import ModelConfig
from fl_app.decoder.ranking import FusionWeights
from fl_app.decoder.template import TemplateParams

if TYPE_CHECKING:  # pragma: no cover
    from fl_app.decoder.spec import DecoderSpec

# The largest model the project may ship (the base decoder has about 0.6 M).
MAX_PARAMETERS = 3_000_000
# The committed English lexicon's size: the most words a manifest may ask for.
MAX_LEXICON_SIZE = 100_000
# The tensors file of the largest model the project may ship (float32), plus room for the
# safetensors header and a margin: what a device downloads at most by default.
MAX_CHECKPOINT_BYTES = MAX_PARAMETERS * 4 + 4 * 1024 * 1024

# Inclusive ranges. Sizes beyond these cost memory or time per request without a model the
# project would ship needing them (defaults: conv 128, hidden 128, 2 layers, shortlist 96,
# coarse_keep 300).
INT_RANGES: dict[str, tuple[int, int]] = {
    "lexicon_size": (1, MAX_LEXICON_SIZE),
    "conv_channels": (1, 1024),
    "hidden": (1, 1024),
    "gru_layers": (1, 8),
    "template.coarse_keep": (1, 2000),
    "fusion.shortlist": (1, 256),
    "fusion.wide": (1, 4000),  # template candidates the model's cut chooses the shortlist from
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 0.9),
    "template.sigma_shape": (1e-3, 10.0),
    "template.sigma_location": (1e-3, 10.0),
    "template.prior_weight": (0.0, 10.0),
    "template.start_radius": (0.05, 20.0),  # key units: a keyboard is about 10 keys wide
    "template.end_radius": (0.05, 20.0),
    "fusion.template": (0.0, 10.0),
    "fusion.prior": (0.0, 10.0),
    "fusion.letters": (0.0, 100.0),
    "fusion.length_bonus": (0.0, 10.0),
}


class DecoderSpecError(ValueError):
    """A decoder section that must not be built; ``reason`` is a stable tag (module docstring)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parameter_count(config: ModelConfig) -> int:
    """``SwipeModel(config)``'s parameter count, computed from the sizes alone."""
    c, h, n_layers = config.conv_channels, config.hidden, config.gru_layers
    conv = (config.n_features * c * 5 + c) + (c * c * 5 + c) + 2 * c  # two convs + LayerNorm
    gru = 0
    for layer in range(n_layers):
        width_in = c if layer == 0 else 2 * h
        gru += 2 * (3 * h * width_in + 3 * h * h + 6 * h)  # two directions
    head = 2 * h * config.n_classes + config.n_classes
    return conv + gru + head


def check_spec(spec: DecoderSpec) -> None:
    """Refuse a spec whose parameter count or any size or weight is out of bounds."""
    values = flat_values(spec)
    for name, value in values.items():
        if name in INT_RANGES and value < 1:
            raise DecoderSpecError("spec_out_of_range", f"{name}={value} must be at least 1")
    if spec.language not in LANGUAGE_ALPHABETS:
        raise DecoderSpecError("spec_malformed", f"unknown language {spec.language!r}")
    if spec.resample not in RESAMPLE_MODES:
        raise DecoderSpecError(
            "spec_malformed", f"resample {spec.resample!r} is not one of {list(RESAMPLE_MODES)}"
        )
    count = parameter_count(spec.model_config)
    if count > MAX_PARAMETERS:
        raise DecoderSpecError(
            "model_too_large",
            f"the decoder section describes a model of {count:,} parameters; the largest "
            f"the project may ship has {MAX_PARAMETERS:,}",
        )
    for name, (lo, hi) in {**INT_RANGES, **FLOAT_RANGES}.items():
        value = values[name]
        if not (lo <= value <= hi):  # NaN fails too
            raise DecoderSpecError(
                "spec_out_of_range", f"{name}={value!r} is outside its range {lo}..{hi}"
            )


def flat_values(spec: DecoderSpec) -> dict[str, Any]:
    """The spec's bounded values by their ``INT_RANGES`` / ``FLOAT_RANGES`` names."""
    out: dict[str, Any] = {
        "lexicon_size": spec.lexicon_size,
        "conv_channels": spec.conv_channels,
        "hidden": spec.hidden,
        "gru_layers": spec.gru_layers,
        "dropout": spec.dropout,
    }
    out.update({f"template.{k}": v for k, v in spec.template.to_dict().items()})
    out.update({f"fusion.{k}": v for k, v in spec.fusion.to_dict().items()})
    return out


# -- reading a section: types before values ----------------------------------------------------


def read_decoder_section(section: Any, spec_versions: Mapping[str, int]) -> dict[str, Any]:
    """``DecoderSpec`` keyword arguments from a manifest's decoder section, type-checked.

    Template and fusion fields a section leaves out keep their defaults; unknown ones, a
    ``model`` or ``features`` part that does not match what the language implies, or a value of
    the wrong type are ``spec_malformed``. Values are not bounded here (``check_spec`` does).
    """
    if not isinstance(section, dict):
        raise DecoderSpecError("spec_malformed", "the decoder section is not a JSON object")
    version = section.get("spec_version")
    if version not in spec_versions.values() or isinstance(version, bool):
        raise DecoderSpecError("spec_malformed", f"unsupported decoder spec version {version!r}")
    resample = _resample(section)
    if spec_versions[resample] != version:
        raise DecoderSpecError(
            "spec_malformed",
            f"features.resample {resample!r} belongs to spec version {spec_versions[resample]}, "
            f"not {version!r}",
        )
    language = section.get("language")
    if not isinstance(language, str) or language not in LANGUAGE_ALPHABETS:
        raise DecoderSpecError("spec_malformed", f"unknown language {language!r}")
    model = _part(section, "model")
    kwargs: dict[str, Any] = {
        "language": language,
        "lexicon_size": _integer(section, "lexicon_size"),
        "conv_channels": _integer(model, "conv_channels", "model."),
        "hidden": _integer(model, "hidden", "model."),
        "gru_layers": _integer(model, "gru_layers", "model."),
        "dropout": _number(model, "dropout", "model."),
        "resample": resample,
        "template": TemplateParams(**_dataclass_fields(section, "template", TemplateParams)),
        "fusion": FusionWeights(**_dataclass_fields(section, "fusion", FusionWeights)),
    }
    _check_implied(section, model, FeatureSpec(alphabet=LANGUAGE_ALPHABETS[language]))
    return kwargs


def _resample(section: dict[str, Any]) -> str:
    """How frames are laid over a trace; manifests from before the choice resampled in time."""
    value = _part(section, "features", {}).get("resample", "time")
    if value not in RESAMPLE_MODES:
        raise DecoderSpecError(
            "spec_malformed",
            f"features.resample is {value!r}; expected one of {list(RESAMPLE_MODES)}",
        )
    return value


def _check_implied(section: dict[str, Any], model: dict[str, Any], features: FeatureSpec) -> None:
    """Sizes the language implies, when a section states them, must be those sizes."""
    implied = {
        "model.n_features": (model.get("n_features"), features.n_features),
        "model.n_classes": (model.get("n_classes"), len(features.alphabet) + 1),
        "features.alphabet": (_part(section, "features", {}).get("alphabet"), features.alphabet),
        "features.frame_ms": (_part(section, "features", {}).get("frame_ms"), FRAME_MS),
    }
    for name, (stated, expected) in implied.items():
        if stated is not None and stated != expected:
            raise DecoderSpecError(
                "spec_malformed", f"{name} is {stated!r}; the language implies {expected!r}"
            )


def _part(section: dict[str, Any], key: str, default: Any = None) -> dict[str, Any]:
    value = section.get(key, default)
    if not isinstance(value, dict):
        raise DecoderSpecError("spec_malformed", f"the decoder section's {key!r} is not an object")
    return value


def _integer(obj: dict[str, Any], key: str, where: str = "") -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecoderSpecError("spec_malformed", f"{where}{key} must be an integer, not {value!r}")
    return value


def _number(obj: dict[str, Any], key: str, where: str = "") -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecoderSpecError(
            "spec_malformed", f"{where}{key} must be a finite number, not {value!r}"
        )
    return float(value)


def _dataclass_fields(section: dict[str, Any], key: str, cls: type) -> dict[str, Any]:
    part = _part(section, key, {})
    known = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(part) - set(known))
    if unknown:
        raise DecoderSpecError("spec_malformed", f"unknown {key} fields {unknown[:3]}")
    out: dict[str, Any] = {}
    for name in part:
        is_int = known[name] in (int, "int")
        out[name] = _integer(part, name, f"{key}.") if is_int else _number(part, name, f"{key}.")
    return out
