"""Quantized serving weights (`SWIPEFL_QUANTIZE`, `fl_app.decoder.model.serving_module`: float16
since issue 16, int8 before; `bench/results/quantization.md` is an int8 run) against float:
decoding accuracy of a briefly trained production-size model, and the model forward's time.

    python bench/quantization.py                  # about 9 minutes on 2 cores

The model trains for `--train-seconds` on synthetic users (enough for realistic logit margins,
which is what rounding could disturb), then the same held-out swipes are decoded with the
float and the quantized serving module: on the generator's users and on the shifted population.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from report_header import report_header, write_report

from fl_app.decoder.evaluation import evaluate_decoder
from fl_app.decoder.model import serving_module
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.training import SwipeDataset, TrainConfig, train
from fl_app.federation.data import heldout_swipes
from fl_app.synthetic.centralized import user_swipes

OUT = Path(__file__).resolve().parent / "results" / "quantization.md"


def forward_ms(module: torch.nn.Module, batch: int, n_features: int, repeats: int = 200) -> float:
    """Mean time of one forward over `batch` traces of 45-90 frames (one torch thread)."""
    x = torch.randn(batch, 90, n_features)
    lengths = torch.tensor([90 - (45 * i) // max(1, batch) for i in range(batch)])
    with torch.inference_mode():
        for _ in range(10):
            module(x, lengths)
        t0 = time.perf_counter()
        for _ in range(repeats):
            module(x, lengths)
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-seconds", type=float, default=420.0)
    p.add_argument("--users", type=int, default=150, help="training users")
    p.add_argument("--eval-users", type=int, default=20, help="held-out users per population")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()

    spec = DecoderSpec()  # production size
    lexicon = spec.lexicon()
    model = spec.build_model(seed=0, device=torch.device("cpu"))
    torch.set_num_threads(2)
    data = SwipeDataset.from_swipes(
        user_swipes(args.users, 40, seed=77, lexicon=lexicon), spec.features
    )
    result = train(
        model,
        data,
        TrainConfig(epochs=20, lr=3e-3, batch_size=32, max_seconds=args.train_seconds),
    )
    torch.set_num_threads(1)
    modules = {"float": serving_module(model), "float16": serving_module(model, quantize=True)}

    rows = []
    for regime in ("train", "shifted"):
        test = heldout_swipes(spec, seed=4242, users=args.eval_users, per_user=25, regime=regime)
        scores = {
            name: evaluate_decoder(spec.build_decoder(m, lexicon), test)
            for name, m in modules.items()
        }
        rows.append(
            f"| {regime} | {len(test)} | "
            + " | ".join(
                f"{scores['float'][k]:.3f} / {scores['float16'][k]:.3f}"
                for k in ("top1", "top4", "mrr")
            )
            + " |"
        )
    n_features = model.config.n_features
    timing = [
        f"| {b} | {forward_ms(modules['float'], b, n_features):.2f} | "
        f"{forward_ms(modules['float16'], b, n_features):.2f} |"
        for b in (1, 4, 8)
    ]
    header = report_header(
        "float16 against float serving weights",
        "quantization.py",
        f"; base model (conv {spec.conv_channels}, GRU {spec.hidden} x {spec.gru_layers}), "
        f"lexicon {spec.language}-{spec.lexicon_size}",
    )
    text = "\n".join(
        [
            *header,
            f"Model trained {result.seconds:.0f} s ({result.steps} steps, batch 32) on "
            f"{len(data)} swipes of {args.users} synthetic users; held-out users never trained on.",
            "",
            "## Decoding (float / float16)",
            "",
            "| population | swipes | top-1 | top-4 | MRR |",
            "|---|---:|---|---|---|",
            *rows,
            "",
            "## Model forward, one torch thread (ms, scripted)",
            "",
            "| batch | float | float16 |",
            "|---:|---:|---:|",
            *timing,
            "",
        ]
    )
    write_report(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
