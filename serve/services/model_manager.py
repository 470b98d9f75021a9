"""The model being served, and how it changes: release reloads, personalized models, words.

One ``ServedModel`` is published at a time in ``ModelManager.current``. It is never mutated
after it is published: a reload, a personalized model or new personal words build a *new*
``ServedModel`` off the request path (download, verify, build, test decode, warm), then swap
the reference in one assignment. A prediction reads ``current`` once and decodes with that
snapshot, so a swap never fails or mixes a request.

Verification of a checkpoint before it is served:

1. before any download of tensors (``release_fetch``): the pointer's fields, the manifest's
   format, its sha256 equal to the pointer's, its decoder section's sizes bounded (nothing is
   allocated for a model larger than the project may ship) and its declared size under the cap;
2. the download itself is capped in bytes and bounded by one deadline;
3. the checkpoint store's own check: the tensors file's sha256 equals the manifest's;
4. the manifest's ``tensors`` table (names, dtypes, shapes) matches the loaded tensors
   (``fl_app.checkpoints.format.check_tensor_table``);
5. the ``decoder`` section rebuilds a module whose state dict has exactly those names and
   shapes (``fl_app.decoder.spec.load_arrays``); every float tensor is finite;
6. a test decode of a canned trace returns candidates with finite scores.

Anything failing is *refused*: logged, counted, remembered across restarts
(``refusals.RefusalLog``: the watcher does not retry it, a forced reload does), and the current
model keeps serving. The release cache and the personalized model on the device are
``device_cache.DeviceCache``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.base import BASE_RUN_ID
from fl_app.checkpoints import RELEASE_KEY, CheckpointError, CheckpointStore, StoreUnavailable
from fl_app.checkpoints.errors import CheckpointAuthError, CheckpointCorrupt, DownloadTooLarge
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec

from .device_cache import DeviceCache
from .metrics import Metrics
from .model_build import build_decoder, canned_trace, canned_word
from .refusals import REFUSALS_FILE, CheckpointRefused, RefusalLog, ReleaseKey
from .release_fetch import DownloadLimits, fetch_release, read_pointer

log = logging.getLogger("serve.model")

RECENT_KEYBOARDS = 4
BASE_KIND = "shipped-base"  # a served pointer's kind when it is the package's base


@dataclass(frozen=True)
class ServedModel:
    """A ready decoder and what it is. Immutable once published."""

    decoder: LearnedDecoder
    spec: DecoderSpec
    release: dict[str, Any]  # the release pointer this model is (based on)
    manifest: dict[str, Any]  # the release checkpoint's manifest
    tensors: dict[str, np.ndarray]  # the release's tensors (personalization starts here)
    personal: dict[str, Any] | None = None  # the personalized model's manifest, if serving one
    loaded_at: float = field(default_factory=time.time)

    @property
    def language(self) -> str:
        return self.spec.language

    @property
    def release_key(self) -> ReleaseKey:
        return ReleaseKey.of(self.release)

    @property
    def version(self) -> dict[str, Any]:
        out = {
            "run_id": self.release["run_id"],
            "round": self.release["round"],
            "sha256": self.release["sha256"],
            "personalized": self.personal is not None,
            "base": self.is_base,
        }
        if self.personal is not None:
            out["personal_sha256"] = self.personal["sha256"]
        return out

    @property
    def is_base(self) -> bool:
        """Serving the shipped base (no release published yet, or none this device took)."""
        return self.release.get("kind") == BASE_KIND

    @property
    def header(self) -> str:
        """The ``X-Model-Version`` value: ``<run>/<round>``, ``+personal`` when personalized."""
        tag = f"{self.release['run_id']}/{self.release['round']}"
        return tag + ("+personal" if self.personal is not None else "")

    @property
    def metrics(self) -> dict[str, Any]:
        out = {"release": self.manifest.get("metrics") or {}}
        if self.personal is not None:
            out["personalized"] = self.personal.get("metrics") or {}
        return out


@dataclass
class CheckResult:
    """What a release check did: ``loaded``, ``unchanged``, ``refused``, ``no_release``,
    ``unavailable``."""

    result: str
    message: str = ""
    reason: str | None = None


class ModelManager:
    """Owns ``current``; every change goes through ``_swap`` under one lock."""

    def __init__(
        self,
        store_factory: Callable[[], CheckpointStore],
        device_dir: Path,
        metrics: Metrics,
        words: Callable[[str], dict[str, float]] = lambda language: {},
        *,
        quantize: bool = False,
        limits: DownloadLimits | None = None,
        base_fallback: bool = True,
    ) -> None:
        self.quantize = quantize
        self.base_fallback = base_fallback  # serve the shipped base until a release arrives
        self.limits = limits or DownloadLimits()
        self._store_factory = store_factory
        self._store: CheckpointStore | None = None
        self.device_dir = Path(device_dir)
        self.device_cache = DeviceCache(self.device_dir)
        self.metrics = metrics
        self._words = words
        self.current: ServedModel | None = None
        self._lock = threading.RLock()  # serialises checks, personal installs and word updates
        self.refusals = RefusalLog(self.device_dir / REFUSALS_FILE)
        self._bad_pointer: str | None = None  # the last malformed pointer's complaint
        self._recent: OrderedDict[str, Keyboard] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.last_reload_at: float | None = None
        self.last_check_at: float | None = None
        self.last_check: CheckResult | None = None
        self.last_refused: dict[str, Any] | None = None
        self.reloads = 0
        self.refused = 0

    def words(self, language: str) -> dict[str, float]:
        return self._words(language)

    # -- keyboards seen recently (warm-up targets) -----------------------------------------

    def note_keyboard(self, keyboard: Keyboard) -> None:
        key = keyboard.layout_key
        if key in self._recent:
            return
        with self._recent_lock:
            self._recent[key] = keyboard
            while len(self._recent) > RECENT_KEYBOARDS:
                self._recent.popitem(last=False)

    def _warm(self, decoder: LearnedDecoder, language: str) -> None:
        """Build templates for recently seen keyboards and run the model once per keyboard."""
        with self._recent_lock:
            keyboards = list(self._recent.values())
        for keyboard in keyboards:
            if keyboard.language != language:
                continue
            try:
                word = canned_word(decoder.lexicon, keyboard)
                decoder.decode(canned_trace(keyboard, word), keyboard, k=4)
            except Exception:  # a keyboard the decoder cannot warm on is not fatal
                log.warning("warm-up decode failed", extra={"keyboard": keyboard.layout_key})

    # -- swapping --------------------------------------------------------------------------

    def _swap(self, served: ServedModel) -> None:
        self.current = served  # one reference assignment: readers see old or new
        self.last_reload_at = time.time()
        self.reloads += 1
        self.metrics.reloads.inc()
        self.metrics.set_model(served.version)
        log.info("model swapped in", extra={"model_version": served.version})

    def _refuse(self, key: ReleaseKey | None, path: str, exc: Exception) -> CheckResult:
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or "corrupt"
        if key is not None:
            cap = self.limits.max_bytes if reason == DownloadTooLarge.code else None
            self.refusals.remember(key, reason, str(exc), cap)
        self.refused += 1
        self.metrics.reloads_refused.labels(reason).inc()
        self.last_refused = {"at": time.time(), "path": path, "reason": reason, "message": str(exc)}
        log.warning(
            "checkpoint refused; current model keeps serving",
            extra={"path": path, "reason": reason, "detail": str(exc)},
        )
        return CheckResult("refused", str(exc), reason)

    # -- the release -----------------------------------------------------------------------

    def _checkpoint_store(self) -> CheckpointStore:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def check(self, force: bool = False) -> CheckResult:
        """Follow the release pointer; load, verify, warm and swap a new release."""
        with self._lock:
            self.last_check_at = time.time()
            result = self._check(force)
            self.last_check = result
            return result

    def _check(self, force: bool) -> CheckResult:
        limit = self.limits.start()  # one deadline for the pointer, manifest and tensors
        try:
            store = self._checkpoint_store()
            pointer = read_pointer(store, limit)
        except (CheckpointCorrupt, DownloadTooLarge) as exc:  # a pointer not to follow
            return self._refuse_pointer(exc)
        except (CheckpointError, OSError) as exc:  # down, credentials, settings
            return self._unavailable(exc)
        self._bad_pointer = None
        if pointer is None:
            return CheckResult("no_release", "no release has been published yet")
        key = ReleaseKey.of(pointer)
        current = self.current
        if current is not None and current.release_key == key:
            return CheckResult("unchanged", "already serving the release")
        before = self.refusals.find(key)
        if before is not None and not force and not self._cap_raised_since(before):
            return CheckResult(
                "refused", f"this release was refused before ({before['reason']})", "refused_before"
            )
        t0 = time.perf_counter()
        self.metrics.release_downloads.inc()
        log.info("downloading release", extra={"path": pointer["path"]})
        try:
            ckpt = fetch_release(store, pointer, limit)
            served = self._build_release(pointer, ckpt.manifest, ckpt.tensors)
        except (StoreUnavailable, CheckpointAuthError) as exc:  # DownloadTimeout too
            return self._unavailable(exc)
        except (CheckpointRefused, CheckpointError, ValueError) as exc:
            return self._refuse(key, pointer["path"], exc)
        # Device files first (cache this release, drop a personalized model of another
        # release), then the swap: what is served is always what the device has on disk.
        self._after_release(served)
        self._swap(served)
        self.metrics.reload_seconds.observe(time.perf_counter() - t0)
        self.refusals.forget(key)
        return CheckResult("loaded", f"serving {served.header}")

    def _cap_raised_since(self, refusal: dict[str, Any]) -> bool:
        """A release refused for its size is worth one more try under a larger cap."""
        refused_at = refusal.get("max_bytes")
        return isinstance(refused_at, int) and refused_at < self.limits.max_bytes

    def _unavailable(self, exc: Exception) -> CheckResult:
        log.warning(
            "checkpoint store unavailable",
            extra={"error_type": type(exc).__name__, "detail": str(exc)},
        )
        return CheckResult("unavailable", str(exc), getattr(exc, "code", None))

    def _refuse_pointer(self, exc: CheckpointError) -> CheckResult:
        """A pointer that cannot be followed: refused (never a 5xx), counted and logged once."""
        reason = exc.code if exc.code != CheckpointCorrupt.code else "POINTER_MALFORMED"
        if str(exc) == self._bad_pointer:
            return CheckResult("refused", str(exc), reason)
        self._bad_pointer = str(exc)
        return self._refuse(None, RELEASE_KEY, CheckpointRefused(reason, str(exc)))

    def _build_release(
        self, pointer: dict[str, Any], manifest: dict[str, Any], tensors: dict[str, np.ndarray]
    ) -> ServedModel:
        language = (manifest.get("decoder") or {}).get("language", "en")
        current = self.current
        spec, decoder = build_decoder(
            manifest,
            tensors,
            self._words(language),
            current.decoder if current else None,
            quantize=self.quantize,
        )
        self._warm(decoder, spec.language)
        served = ServedModel(decoder, spec, dict(pointer), manifest, tensors)
        # A personalized model of this very release (e.g. after a restart) serves instead.
        return self._with_personal(served) or served

    def _after_release(self, served: ServedModel) -> None:
        """Cache the release on the device; drop a personalized model of another release."""
        self.device_cache.keep_release(served.release, served.manifest, served.tensors)
        if served.personal is None and self.device_cache.drop_personal():
            log.info("personalized model of an older release removed")

    def serve_base(self, language: str = "en") -> bool:
        """Serve the base decoder shipped in the package (fl_app/base): a fresh install has a
        model before any release exists. Never cached on the device (the package has it)."""
        from fl_app.base import has_base, read_base

        if not has_base(language):
            return False
        with self._lock:
            tensors, manifest = read_base(language)
            pointer = {
                "run_id": BASE_RUN_ID,
                "round": 0,
                "path": f"fl_app/base/{language}",
                "sha256": manifest["sha256"],
                "kind": BASE_KIND,
            }
            served = self._build_release(pointer, manifest, tensors)
            self._swap(served)
            log.info("serving the shipped base decoder", extra={"language": language})
            return True

    def load_cached(self) -> bool:
        """At startup: serve the release cached on the device (before the store answers), else
        the shipped base when `serve_base` was asked for."""
        with self._lock:
            cached = self.device_cache.release()
            if cached is None:
                return self.base_fallback and self.serve_base()
            tensors, pointer, manifest = cached
            try:
                served = self._build_release(pointer, manifest, tensors)
            except CheckpointRefused as exc:
                log.warning("cached release refused", extra={"reason": exc.reason})
                return False
            self._swap(served)
            return True

    # -- personalized models ----------------------------------------------------------------

    def _with_personal(self, base: ServedModel) -> ServedModel | None:
        found = self.device_cache.personal()
        if found is None:
            return None
        tensors, manifest = found
        if (manifest.get("base") or {}).get("sha256") != base.release["sha256"]:
            return None
        try:
            _, decoder = build_decoder(
                {**manifest, "decoder": base.manifest.get("decoder")},
                tensors,
                self._words(base.language),
                base.decoder,
                quantize=self.quantize,
            )
        except CheckpointRefused as exc:
            log.warning("personalized model refused", extra={"reason": exc.reason})
            return None
        self._warm(decoder, base.language)
        return replace(base, decoder=decoder, personal=manifest, loaded_at=time.time())

    def install_personal(
        self, base_sha256: str, tensors: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> bool:
        """Keep and serve a personalized model, unless its base is no longer the release."""
        with self._lock:
            current = self.current
            if current is None or current.release["sha256"] != base_sha256:
                return False
            base = {k: current.release[k] for k in ("run_id", "round", "path", "sha256")}
            self.device_cache.keep_personal(tensors, meta, base)
            served = self._with_personal(replace(current, personal=None))
            if served is None:
                self.device_cache.drop_personal()
                return False
            self._swap(served)
            return True

    # -- personal words --------------------------------------------------------------------

    def add_words(self, language: str, words: dict[str, float]) -> bool:
        """Serve a decoder whose lexicon has ``words`` too (same model: no retraining)."""
        with self._lock:
            current = self.current
            if current is None or current.language != language or not words:
                return False
            old = current.decoder
            decoder = LearnedDecoder(
                old.model, old.spec, old.lexicon.with_words(words), old.template.params, old.fusion
            )
            decoder.context = old.context
            self._warm(decoder, language)
            self.current = replace(current, decoder=decoder)
            return True
