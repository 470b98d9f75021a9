"""What a checkpoint needs besides tensors to become a working decoder.

The ServerApp writes `DecoderSpec.to_manifest()` into every manifest; the sidecar, ClientApps
and benchmarks rebuild the model and decoder from it with `from_manifest`, which bounds every
size first (`spec_bounds.py`: a manifest is outside data, never trusted for sizes). Tensors move as
numpy arrays (safetensors on disk, Flower ArrayRecords on the wire), never as pickles.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fl_app.decoder.features import FeatureSpec
from fl_app.decoder.keyboard import LANGUAGE_ALPHABETS
from fl_app.decoder.lexicon import Lexicon, load_lexicon
from fl_app.decoder.model import ModelConfig, SwipeModel, pick_device
from fl_app.decoder.ranking import FusionWeights, LearnedDecoder
from fl_app.decoder.spec_bounds import check_spec, read_decoder_section
from fl_app.decoder.template import TemplateParams

# A section's version by how its frames are laid: frames along the path came later, and a
# reader that knows only version 1 must refuse such a model rather than feed it frames in time.
SPEC_VERSIONS = {"time": 1, "path": 2}


@dataclass
class DecoderSpec:
    """Architecture, features and decoding weights: enough to rebuild a decoder."""

    language: str = "en"
    lexicon_size: int = 10000
    conv_channels: int = 128
    hidden: int = 128
    gru_layers: int = 2
    dropout: float = 0.1
    resample: str = "time"  # how frames are laid over a trace (features.RESAMPLE_MODES)
    template: TemplateParams = field(default_factory=TemplateParams)
    fusion: FusionWeights = field(default_factory=FusionWeights)

    @property
    def features(self) -> FeatureSpec:
        return FeatureSpec(alphabet=LANGUAGE_ALPHABETS[self.language], resample=self.resample)

    @property
    def model_config(self) -> ModelConfig:
        feats = self.features
        return ModelConfig(
            n_features=feats.n_features,
            n_classes=len(feats.alphabet) + 1,
            conv_channels=self.conv_channels,
            hidden=self.hidden,
            gru_layers=self.gru_layers,
            dropout=self.dropout,
        )

    def build_model(self, seed: int = 0, device: torch.device | None = None) -> SwipeModel:
        torch.manual_seed(seed)
        return SwipeModel(self.model_config).to(device or pick_device())

    def model_with(self, tensors: Mapping[str, np.ndarray]) -> SwipeModel:
        """This spec's model on the CPU holding `tensors` (names and shapes checked by
        `load_arrays`), in eval mode: training sets its own."""
        model = self.build_model(device=torch.device("cpu"))
        load_arrays(model, tensors)
        return model.eval()

    def lexicon(self) -> Lexicon:
        return load_lexicon(self.language, self.lexicon_size)

    def build_decoder(self, model: SwipeModel, lexicon: Lexicon | None = None) -> LearnedDecoder:
        return LearnedDecoder(
            model, self.features, lexicon or self.lexicon(), self.template, self.fusion
        )

    def to_manifest(self) -> dict[str, Any]:
        return {
            "spec_version": SPEC_VERSIONS.get(self.resample, 0),
            "language": self.language,
            "lexicon_size": self.lexicon_size,
            "model": self.model_config.to_dict(),
            # frames in time leave `resample` out: such a section reads as every one before it
            "features": {"alphabet": self.features.alphabet, "frame_ms": self.features.frame_ms}
            | ({} if self.resample == "time" else {"resample": self.resample}),
            "template": self.template.to_dict(),
            "fusion": self.fusion.to_dict(),
        }

    def check(self) -> DecoderSpec:
        """Refuse sizes beyond what the project may ship (``spec_bounds.check_spec``); self."""
        check_spec(self)
        return self

    @classmethod
    def from_manifest(cls, section: dict[str, Any]) -> DecoderSpec:
        """The spec a manifest's decoder section describes, type-checked and bounded before
        anything is allocated; ``DecoderSpecError`` (a ValueError with a ``reason``) if not."""
        return cls(**read_decoder_section(section, SPEC_VERSIONS)).check()


def read_model_dir(
    directory: str | os.PathLike[str],
) -> tuple[DecoderSpec, SwipeModel, dict[str, Any]]:
    """A checkpoint folder (a release, the shipped base, a recipe's output) as its spec, its
    eval model on the CPU and its manifest: sha256 and tensor table verified, the decoder
    section bounded before the model is allocated."""
    # Imported here: decoding needs no checkpoint store, and importing one pulls its backends.
    from fl_app.checkpoints.format import read_checkpoint_dir

    tensors, manifest = read_checkpoint_dir(directory)
    spec = DecoderSpec.from_manifest(manifest["decoder"])
    return spec, spec.model_with(tensors), manifest


def model_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """state_dict as contiguous float32 numpy arrays (what safetensors and Flower carry)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_arrays(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load arrays into `model`, refusing missing, extra or mis-shaped tensors."""
    state = model.state_dict()
    missing = sorted(set(state) - set(arrays))
    extra = sorted(set(arrays) - set(state))
    if missing or extra:
        raise ValueError(f"tensor names differ: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, ref in state.items():
        if tuple(arrays[name].shape) != tuple(ref.shape):
            raise ValueError(
                f"tensor {name} has shape {tuple(arrays[name].shape)}, expected {tuple(ref.shape)}"
            )
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
