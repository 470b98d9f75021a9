"""POST /api/v1/lexicon/words: the user's own words, kept on the device, decodable at once."""

from __future__ import annotations

from fastapi import APIRouter

from fl_app.decoder.keyboard import LANGUAGE_ALPHABETS

from ...schemas import WordsAdded, WordsList, WordsRequest
from ..deps import ServicesDep, TokenDep
from .common import errors

router = APIRouter(prefix="/api/v1/lexicon", tags=["lexicon"], dependencies=[TokenDep])


@router.post("/words", response_model=WordsAdded, responses=errors(401, 413, 415, 422))
def add_words(body: WordsRequest, services: ServicesDep) -> WordsAdded:
    served = services.manager.current
    language = body.language or (served.language if served else "en")
    new, total = services.words.add(language, body.words, body.freq)
    if new:
        services.manager.add_words(language, new)
    return WordsAdded(
        language=language,
        added=len(new),
        total=total,
        active=served is not None and served.language == language,
    )


@router.get("/words", response_model=WordsList, responses=errors(401))
def list_words(services: ServicesDep) -> WordsList:
    return WordsList(
        words={
            lang: sorted(services.words.words_for(lang))
            for lang in LANGUAGE_ALPHABETS
            if services.words.words_for(lang)
        }
    )
