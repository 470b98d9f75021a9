"""The shipped base decoder: the first release every install has, before any federation.

Keyboards ship a model and improve it. `fl_app/base/<language>/` holds one checkpoint folder
(``model.safetensors`` + ``manifest.json`` in the format of `fl_app.checkpoints.format`) made by
the pretraining recipe (`python -m fl_app.pretrain`, docs/pretraining.md); its manifest records
the recipe, the data it saw, the lexicon and its figures. A sidecar with no release serves it,
and the ServerApp starts from it (`init=base`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.decoder.spec import DecoderSpec

BASE_ROOT = Path(__file__).resolve().parent
BASE_RUN_ID = "base"  # how a served base names itself in model versions and pointers


class NoBaseModel(FileNotFoundError):
    """No shipped base for this language."""


def base_dir(language: str = "en") -> Path:
    return BASE_ROOT / language


def has_base(language: str = "en") -> bool:
    return (base_dir(language) / "manifest.json").is_file()


@lru_cache(maxsize=2)
def base_manifest(language: str = "en") -> dict[str, Any]:
    from fl_app.checkpoints.format import read_manifest_dir

    if not has_base(language):
        raise NoBaseModel(f"no shipped base decoder for language {language!r} in {BASE_ROOT}")
    return read_manifest_dir(base_dir(language))


def read_base(language: str = "en") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The base's tensors (sha256 and tensor table verified) and manifest."""
    from fl_app.checkpoints.format import read_checkpoint_dir

    if not has_base(language):
        raise NoBaseModel(f"no shipped base decoder for language {language!r} in {BASE_ROOT}")
    return read_checkpoint_dir(base_dir(language))


def base_spec(language: str = "en") -> DecoderSpec:
    return DecoderSpec.from_manifest(base_manifest(language)["decoder"])
