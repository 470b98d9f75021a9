"""The swipe model: per-frame letter probabilities for CTC.

Two 1-D convolutions read local shape (the second halves the frame rate), a bidirectional
GRU reads the whole trace, and a linear head scores blank + each letter per frame. The
decoder turns those frame scores into lexicon-word scores (fl_app/decoder/ranking.py).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class ModelConfig:
    """Everything needed to rebuild the module; stored in each checkpoint manifest."""

    n_features: int
    n_classes: int  # blank + letters
    conv_channels: int = 128
    hidden: int = 128
    gru_layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class SwipeModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.conv_channels
        self.conv = strided_convolutions(config)
        self.norm = nn.LayerNorm(c)
        self.gru = nn.GRU(
            c,
            config.hidden,
            num_layers=config.gru_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.gru_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.hidden, config.n_classes)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames after the stride-2 convolution."""
        return torch.div(lengths + 1, 2, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, frames, features) -> log-probs (batch, frames/2, classes), lengths."""
        h = self.conv[1](self.conv[0](x.transpose(1, 2)))
        h = self.conv[3](self.conv[2](zero_past_end(h, lengths))).transpose(1, 2)
        h = self.norm(h)
        out_len = self.output_lengths(lengths)
        if h.shape[0] == 1:
            out, _ = self.gru(h)
        else:
            packed = pack_padded_sequence(h, out_len.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, _ = self.gru(packed)
            out, _ = pad_packed_sequence(
                packed_out, batch_first=True, total_length=x.shape[1] // 2 + x.shape[1] % 2
            )
        return self.head(self.drop(out)).log_softmax(-1), out_len


def strided_convolutions(config: ModelConfig) -> nn.Sequential:
    """The model's front: local shape from two 1-D convolutions, the second halving the frame
    rate (`SwipeModel.output_lengths`). Its own function so that a variant of what reads the
    frames after it (bench/encoder_scout.py) starts from the same front."""
    c = config.conv_channels
    return nn.Sequential(
        nn.Conv1d(config.n_features, c, kernel_size=5, padding=2),
        nn.GELU(),
        nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2),
        nn.GELU(),
    )


def zero_past_end(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, channels, frames) with each row's frames from its length on set to zero.

    The first convolution's outputs past a row's end are computed from padding and feed the
    strided convolution's last frames (and, through the backward GRU, every frame); zeroed,
    they are what the convolution's own padding gives a row alone, so a row's answer does not
    depend on whether a longer neighbour made it padded: training, batched evaluation and a
    sidecar's batch-of-one forward all compute the same function.
    """
    frames = torch.arange(h.shape[2], device=h.device).unsqueeze(0)
    inside = (frames < lengths.to(h.device).unsqueeze(1)).unsqueeze(1).to(h.dtype)
    return h * inside


def serving_module(model: SwipeModel, quantize: bool = False) -> nn.Module:
    """The eval-mode model as TorchScript for serving threads, rows independent of each other.

    An eager forward releases and re-takes the GIL at every op, so beside a busy event loop
    each op waits for its turn (batch-8 forward of the base model: 6.6 ms alone, 17.9 ms next
    to a busy Python thread); a scripted forward releases it once (6.1 and 8.1 ms). TorchScript
    is deprecated from torch 2.13, but nothing else runs a whole CPU forward without Python
    between the ops; where scripting fails, the eager module serves (correct, slower under load).

    Rows are independent: `SwipeModel.forward` keeps padding out of every row
    (`zero_past_end`), so a batched request gets the answer it would get alone. ``quantize``:
    dynamic float16 weights for the GRU and the head (activations stay float). Not int8: its per-batch activation scale couples requests (issue 16); float16
    keeps most of int8's speed (`bench/serve.py` measures). Without it the module shares
    `model`'s weights; with it, the GRU and the head are its own.
    """
    model.eval()
    served: nn.Module = model
    if quantize:
        try:
            with _deprecations_quiet():
                served = torch.ao.quantization.quantize_dynamic(
                    model, {nn.GRU, nn.Linear}, dtype=torch.float16
                )
                with torch.inference_mode():  # an engine may lack float16 kernels at run time
                    served(torch.zeros(1, 4, model.config.n_features), torch.tensor([4]))
        except Exception:  # no quantized engine with float16 kernels here: float weights
            served = model
    return scripted(served.eval())


def scripted(fn_or_module: Any) -> Any:
    """TorchScript of a function or module (one GIL release for all its ops), or the object
    itself on a torch without TorchScript."""
    try:
        with _deprecations_quiet():
            return torch.jit.script(fn_or_module)
    except Exception:
        return fn_or_module


@contextlib.contextmanager
def _deprecations_quiet() -> Iterator[None]:
    # torch.jit and torch.ao.quantization warn of deprecation from torch 2.13 on; both still
    # work, and a release without them falls back where they are called.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        yield


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA when present (or as asked), else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
