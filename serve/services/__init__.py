"""The sidecar's services (no HTTP here): routes call them, the lifespan starts and stops them.

``swipes`` is the device's SQLite swipe store; the checkpoint store (releases) is reached only
through the ``ModelManager``, which opens it with ``checkpoints()`` on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fl_app.checkpoints import CheckpointStore, store_from_config
from fl_app.decoder.template_cache import CacheStats
from fl_app.swipes.store import SwipeStore

from ..core.config import Settings
from .ingest import Ingest
from .metrics import Metrics
from .model_manager import ModelManager
from .parsing import SwipeParser
from .personal_words import PersonalWords
from .personalization import Personalizer, TrainOptions
from .prediction import PredictionService
from .predictor import Predictor
from .release_fetch import DownloadLimits

log = logging.getLogger("serve")


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    swipes: SwipeStore
    words: PersonalWords
    manager: ModelManager
    predictor: Predictor
    prediction: PredictionService
    ingest: Ingest
    personalizer: Personalizer
    parser: SwipeParser

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> Services:
        settings.device_dir.mkdir(parents=True, exist_ok=True)
        swipes = SwipeStore(
            settings.swipe_store_path,
            max_points=settings.max_points,
            max_rows=settings.retention_max_rows,
            max_age_days=settings.retention_max_age_days,
            heldout_fraction=settings.heldout_fraction,
            split_rule=settings.heldout_split,
        )
        words = PersonalWords(settings.device_dir / "words.json", settings.max_personal_words)

        def checkpoints() -> CheckpointStore:
            return store_from_config(
                settings.checkpoint_store,
                root=settings.checkpoint_dir,
                prefix=settings.checkpoint_prefix,
                **(
                    {
                        "create_bucket": False,  # devices only read the bucket
                        "connect_timeout": min(3.0, settings.s3_timeout_s),
                        "read_timeout": settings.s3_timeout_s,
                        "max_retry_s": settings.s3_timeout_s,
                    }
                    if settings.checkpoint_store == "s3"
                    else {}
                ),
            )

        manager = ModelManager(
            checkpoints,
            settings.device_dir,
            metrics,
            words.words_for,
            quantize=settings.quantize,
            base_fallback=settings.serve_base,
            limits=DownloadLimits(settings.download_max_bytes, settings.download_deadline_s),
        )

        def served_templates() -> CacheStats | None:
            served = manager.current  # one read: a swap may happen meanwhile
            return None if served is None else served.decoder.template.cache.stats()

        metrics.watch_templates(served_templates)
        predictor = Predictor(
            manager,
            metrics,
            max_batch=settings.predict_max_batch,
            queue_size=settings.predict_queue,
            timeout_s=settings.predict_timeout_s,
            workers=settings.predict_workers,
        )
        ingest = Ingest(swipes, metrics, max_group=settings.ingest_max_group)
        personalizer = Personalizer(
            swipes,
            manager,
            metrics,
            TrainOptions(
                epochs=settings.train_epochs,
                lr=settings.train_lr,
                batch_size=settings.train_batch_size,
                accept_margin=settings.train_accept_margin,
                min_swipes=settings.train_min_swipes,
                max_swipes=settings.train_max_swipes,
                word_weight=settings.train_word_weight,
                word_candidates=settings.train_word_candidates,
            ),
        )
        parser = SwipeParser(settings.max_points)
        prediction = PredictionService(parser, manager, predictor, max_k=settings.max_k)
        return cls(
            settings=settings,
            metrics=metrics,
            swipes=swipes,
            words=words,
            manager=manager,
            predictor=predictor,
            prediction=prediction,
            ingest=ingest,
            personalizer=personalizer,
            parser=parser,
        )

    def start(self) -> None:
        self.predictor.start()
        self.ingest.start()

    def close(self) -> None:
        """Stop training, answer queued predictions, commit queued swipes, close the swipe store."""
        self.personalizer.close()
        self.predictor.close()
        self.ingest.close()
        self.swipes.close()
