"""The recipe's CTC stage, kept so that word-level experiments can start from it.

The CTC stage is most of the recipe's hour on the reference machine; everything after it
(tuning on public-val, the word-level stage, the figures) takes about a quarter of that. A run
with ``ctc_stage_out=DIR`` also writes the stage's weights, with the settings that made them;
a later run with ``ctc_stage_from=DIR`` starts there instead of training again. It is refused
unless its own settings would have made the same weights, so a word-level experiment can never
quietly start from another CTC stage than the one its config describes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from fl_app.checkpoints.format import write_checkpoint_dir
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.spec import DecoderSpec, model_arrays, read_model_dir
from fl_app.pretrain.config import PretrainConfig

KIND = "ctc-stage"
# The settings the stage's weights depend on. train.threads is left out: it changes the last
# bits of the weights, not the recipe; the stage records the count it ran with instead.
STAGE_SECTIONS = ("seed", "model", "data", "train")


def stage_settings(cfg: PretrainConfig) -> dict[str, Any]:
    """The part of `cfg` that fixes the CTC stage's weights."""
    settings = {key: value for key, value in asdict(cfg).items() if key in STAGE_SECTIONS}
    settings["train"].pop("threads")
    return settings


def write_stage(
    directory: str | os.PathLike[str],
    cfg: PretrainConfig,
    spec: DecoderSpec,
    model: SwipeModel,
    record: dict[str, Any],
) -> str:
    """Write the stage's weights and `record` (steps, loss, seconds, threads, data counts) as a
    checkpoint folder; returns its sha256."""
    manifest = {
        "decoder": spec.to_manifest(),
        "kind": KIND,
        "stage": {"settings": stage_settings(cfg), **record},
    }
    return write_checkpoint_dir(directory, model_arrays(model), manifest)["sha256"]


def read_stage(
    directory: str | os.PathLike[str], cfg: PretrainConfig
) -> tuple[SwipeModel, dict[str, Any]]:
    """The stage's model (as CTC training leaves it: eval mode) and its record, refused with a
    ValueError naming the first setting that differs from `cfg`'s."""
    _, model, manifest = read_model_dir(directory)
    if manifest.get("kind") != KIND:
        raise ValueError(f"{directory} is not a CTC stage (kind {manifest.get('kind')!r})")
    stage = dict(manifest["stage"])
    # Through JSON, as the record went: tuples become lists on both sides.
    recorded, wanted = stage.pop("settings"), json.loads(json.dumps(stage_settings(cfg)))
    differences = [
        f"{name} is {there!r} there, {here!r} here"
        for name, there, here in differing_settings(recorded, wanted)
    ]
    if differences:
        raise ValueError(
            f"the CTC stage in {directory} was made with other settings: "
            + "; ".join(differences[:3])
            + " (rerun without ctc_stage_from, or with the stage's settings)"
        )
    return model, {**stage, "dir": str(directory), "sha256": manifest["sha256"]}


def differing_settings(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, value in `a`, value in `b`) for each setting where two nested configs (as
    JSON gives them) differ; a setting one of them lacks is None there."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            name = f"{path}.{key}" if path else key
            out += differing_settings(a.get(key), b.get(key), name)
        return out
    return [(path, a, b)] if a != b else []
