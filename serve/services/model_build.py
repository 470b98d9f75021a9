"""Turning a checkpoint into a decoder worth serving: the tensors checked against the manifest,
the decoder rebuilt from its bounded spec, and a test decode of a clean trace on a default
keyboard, all before anything is swapped in (`CheckpointRefused` names what failed).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from fl_app.checkpoints.errors import CheckpointCorrupt
from fl_app.checkpoints.format import check_tensor_table
from fl_app.decoder.context import ContextPrior, shipped_context
from fl_app.decoder.features import collapse_repeats
from fl_app.decoder.keyboard import NAMED_LAYOUTS, Keyboard, named_keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.model import serving_module
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.spec_bounds import DecoderSpecError
from fl_app.decoder.template import TemplateDecoder

from .refusals import CheckpointRefused

log = logging.getLogger("serve.model")

# -- canned traces for test decodes and warm-up ------------------------------------------------


def canned_word(lexicon: Lexicon, keyboard: Keyboard) -> str:
    for word in lexicon.words[:500]:
        if len(collapse_repeats(word)) >= 3 and keyboard.can_type(word):
            return word
    letters = keyboard.alphabet
    return letters[:3] if len(letters) >= 3 else letters * 2


def canned_trace(keyboard: Keyboard, word: str) -> np.ndarray:
    """A clean trace through the word's key centres, 16 ms a point."""
    centres = keyboard.word_centres(collapse_repeats(word))
    if len(centres) == 1:
        centres = np.vstack([centres, centres + [keyboard.key_width * 0.3, 0.0]])
    pieces = [
        np.linspace(a, b, 8, endpoint=False) for a, b in zip(centres[:-1], centres[1:], strict=True)
    ]
    xy = np.vstack([*pieces, centres[-1:]])
    t = np.arange(len(xy), dtype=np.float64) * 16.0
    return np.column_stack([xy, t])


def default_keyboard(language: str) -> Keyboard:
    for name, layout in NAMED_LAYOUTS.items():
        if layout["language"] == language:
            return named_keyboard(name, 375.0, 217.0)
    raise CheckpointRefused("unknown_language", f"no keyboard layout for language {language!r}")


# -- building and verifying ------------------------------------------------------------------


def check_tensors(manifest: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    """Refuse tensors the manifest's table does not describe (``mismatch``), then any float
    tensor with a NaN or infinity (``non_finite``)."""
    try:
        check_tensor_table(manifest, tensors)
    except CheckpointCorrupt as exc:
        raise CheckpointRefused("mismatch", str(exc)) from None
    for name in manifest["tensors"]:
        arr = tensors[name]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise CheckpointRefused("non_finite", f"tensor {name} has non-finite values")


def same_templates(a: TemplateDecoder, b: TemplateDecoder) -> bool:
    """Templates depend on the lexicon (words, priors) and the template params, not the model."""
    return (
        a.params == b.params
        and a.lexicon.words == b.lexicon.words
        and np.array_equal(a.lexicon.freqs, b.lexicon.freqs)
    )


def build_decoder(
    manifest: dict[str, Any],
    tensors: dict[str, np.ndarray],
    words: dict[str, float] | None,
    reuse: LearnedDecoder | None = None,
    *,
    quantize: bool = False,
) -> tuple[DecoderSpec, LearnedDecoder]:
    """Rebuild, load and test-decode; raises CheckpointRefused on any mismatch.

    ``reuse``: the decoder being served; when its lexicon and template params are the same,
    its template cache (per keyboard, the costly part of a warm-up) is shared, not rebuilt.
    ``quantize``: serve float16 weights (``serving_module``); the test decode runs on what serves.
    """
    check_tensors(manifest, tensors)
    section = manifest.get("decoder")
    if not isinstance(section, dict):
        raise CheckpointRefused("mismatch", "manifest has no decoder section")
    try:
        spec = DecoderSpec.from_manifest(section)  # bounded before anything is allocated
    except DecoderSpecError as exc:
        raise CheckpointRefused(exc.reason, str(exc)) from None
    try:
        model = spec.model_with(tensors)
        lexicon = spec.lexicon()
    except (KeyError, TypeError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise CheckpointRefused("mismatch", f"decoder does not match the tensors: {exc}") from None
    if words:
        lexicon = lexicon.with_words(words)
    decoder = spec.build_decoder(serving_module(model, quantize), lexicon)
    decoder.context = served_context(spec.language)  # used when a request names `previous`
    if reuse is not None and same_templates(reuse.template, decoder.template):
        decoder.template = reuse.template
    test_decode(decoder, default_keyboard(spec.language))
    return spec, decoder


@functools.cache
def served_context(language: str) -> ContextPrior | None:
    """The package's word-pair prior for the language; a table that fails to load is logged
    once and left out (predictions then ignore `previous`), never a reason to refuse a release,
    and not read again for each release."""
    try:
        return shipped_context(language)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("word-pair prior not loaded", extra={"error_type": type(exc).__name__})
        return None


def test_decode(decoder: LearnedDecoder, keyboard: Keyboard) -> None:
    word = canned_word(decoder.lexicon, keyboard)
    try:
        out = decoder.decode(canned_trace(keyboard, word), keyboard, k=4)
    except Exception as exc:  # any failure of a fresh decoder means: do not serve it
        raise CheckpointRefused(
            "test_decode", f"test decode failed: {type(exc).__name__}"
        ) from None
    if not out or not all(np.isfinite(score) for _, score in out):
        raise CheckpointRefused("test_decode", "test decode gave no finite candidates")
