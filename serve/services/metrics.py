"""Prometheus metrics of one app instance (its own registry: no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fl_app.decoder.template_cache import CacheStats

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "swipefl_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predict_latency = Histogram(
            "swipefl_predict_decode_seconds",
            "Time a prediction spends queued and decoding (excludes HTTP)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predict_batch = Histogram(
            "swipefl_predict_batch_size",
            "Swipes decoded together in one model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.predictions = Counter("swipefl_predictions", "Predictions served", registry=r)
        self.predict_expired = Counter(
            "swipefl_predict_expired",
            "Predictions dropped before decoding: their requester had timed out",
            registry=r,
        )
        self.predict_undecodable = Counter(
            "swipefl_predict_undecodable",
            "Predictions refused as undecodable (422 UNDECODABLE)",
            registry=r,
        )
        self.swipes_stored = Counter(
            "swipefl_swipes_stored", "Labelled swipes committed to the swipe store", registry=r
        )
        self.commit_group = Histogram(
            "swipefl_ingest_commit_swipes",
            "Swipes committed together in one transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096),
            registry=r,
        )
        self.commit_latency = Histogram(
            "swipefl_ingest_commit_seconds",
            "Duration of one group commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "swipefl_model_info",
            "The model being served (value 1): release run, round, sha256 prefix, personalized",
            ["run_id", "round", "sha256", "personalized"],
            registry=r,
        )
        self.model_loaded = Gauge("swipefl_model_loaded", "1 when a model is loaded", registry=r)
        self.reloads = Counter(
            "swipefl_model_reloads", "Models swapped in (releases and personalized)", registry=r
        )
        self.reloads_refused = Counter(
            "swipefl_model_reloads_refused",
            "Checkpoints refused (corrupt, mismatched or failing the test decode)",
            ["reason"],
            registry=r,
        )
        self.release_downloads = Counter(
            "swipefl_release_downloads",
            "Release downloads started (a refused release is not downloaded again)",
            registry=r,
        )
        self.reload_seconds = Histogram(
            "swipefl_model_reload_seconds",
            "Download + verify + warm time of an accepted checkpoint",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.train_jobs = Counter(
            "swipefl_personalization_jobs", "Personalization jobs by result", ["result"], registry=r
        )
        self._info_labels: tuple[str, ...] | None = None

    def watch_templates(self, stats: Callable[[], CacheStats | None]) -> None:
        """Export the served decoder's template cache, read at each scrape."""
        self.registry.register(_TemplateCollector(stats))

    def set_model(self, version: dict[str, Any] | None) -> None:
        if self._info_labels is not None:
            self.model_info.remove(*self._info_labels)
            self._info_labels = None
        if version is None:
            self.model_loaded.set(0)
            return
        labels = (
            str(version["run_id"]),
            str(version["round"]),
            str(version["sha256"])[:12],
            "true" if version.get("personalized") else "false",
        )
        self.model_info.labels(*labels).set(1)
        self._info_labels = labels
        self.model_loaded.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _TemplateCollector:
    """``swipefl_template_builds_total`` and ``swipefl_template_banks{tier}`` of the served
    decoder's template cache (a new cache, with new counts, comes with a new lexicon)."""

    def __init__(self, stats: Callable[[], CacheStats | None]) -> None:
        self.stats = stats

    def describe(self) -> list[Metric]:
        return []  # the families exist only once a model is served

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        if stats is None:
            return
        yield CounterMetricFamily(
            "swipefl_template_builds",
            "Template banks built by the served decoder (one per new key arrangement)",
            value=stats.builds,
        )
        banks = GaugeMetricFamily(
            "swipefl_template_banks",
            "Template banks cached: residents (used most) and strangers (seen recently)",
            labels=["tier"],
        )
        banks.add_metric(["resident"], stats.residents)
        banks.add_metric(["stranger"], stats.strangers)
        yield banks
