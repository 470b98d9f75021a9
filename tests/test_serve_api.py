"""Every sidecar endpoint over real HTTP (uvicorn on loopback): successes and error codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from serve_helpers import (
    KEYBOARD,
    SidecarProcess,
    metric_value,
    publish,
    synthetic_swipes,
    trace_for,
)

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    proc = SidecarProcess(
        tmp_path_factory.mktemp("api"),
        token=TOKEN,
        max_body_bytes=200_000,
        max_batch=8,
        max_points=300,
        access_log="true",
    )
    publish(proc.checkpoints(), "run-a", 3, metrics={"top1": 0.42, "mrr": 0.5})
    proc.start(wait_ready=True)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def swipes():
    return synthetic_swipes(20, seed=7)


@pytest.fixture
def client(sidecar):
    with sidecar.client() as c:
        yield c


def unlabelled(swipe):
    return {"points": swipe["points"], "keyboard": swipe["keyboard"]}


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# -- operations ----------------------------------------------------------------------------------


def test_health_ready_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True
    assert ready["model_version"]["run_id"] == "run-a"
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for name in (
        "swipefl_http_request_duration_seconds_bucket",
        "swipefl_predictions_total",
        "swipefl_swipes_stored_total",
        "swipefl_model_info",
        "swipefl_model_reloads_total",
        "swipefl_model_reloads_refused",
    ):
        assert name in text
    assert metric_value(text, "swipefl_model_info", {"run_id": "run-a", "round": "3"}) == 1.0


def test_binds_loopback(sidecar):
    # The default host is 127.0.0.1 (the fixture does not set SWIPEFL_HOST).
    assert "SWIPEFL_HOST" not in sidecar.env()
    assert "http://127.0.0.1:" in sidecar.logs()


# -- predict -------------------------------------------------------------------------------------


def test_predict_returns_candidates_and_version(client, swipes):
    resp = client.post("/api/v1/predict", json=unlabelled(swipes[0]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["candidates"]) == 4  # default k
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    version = body["model_version"]
    assert (version["run_id"], version["round"], version["personalized"]) == ("run-a", 3, False)
    assert resp.headers["X-Model-Version"] == "run-a/3"


def test_predict_k_and_explicit_keyboard(client, swipes):
    resp = client.post("/api/v1/predict", json={**unlabelled(swipes[1]), "k": 7})
    assert resp.status_code == 200
    assert len(resp.json()["candidates"]) == 7
    # Explicit geometry: the named layout's own hitboxes, sent as keys.
    from fl_app.decoder.keyboard import named_keyboard

    kb = named_keyboard("qwerty-en", 375, 217)
    explicit = {
        "width": 375,
        "height": 217,
        "keys": [{"label": k.label, "x": k.x, "y": k.y, "w": k.w, "h": k.h} for k in kb.keys],
    }
    resp = client.post("/api/v1/predict", json={"points": trace_for("hello"), "keyboard": explicit})
    assert resp.status_code == 200, resp.text


def test_predict_ranks_by_the_word_before_the_cursor_too(client):
    """`previous` (the text before the cursor) adds the shipped word-pair prior's bonus for its
    last word to each candidate's score, the same through the shortcut and the route; an
    unknown word or a blank changes nothing."""
    from fl_app.decoder.context import shipped_context

    body = {"points": trace_for("reason"), "keyboard": KEYBOARD, "k": 8}

    def candidates(extra: dict, content_type: str = "application/json") -> dict[str, float]:
        resp = client.post(
            "/api/v1/predict",
            content=json.dumps({**body, **extra}),
            headers={"Content-Type": content_type},
        )
        assert resp.status_code == 200, resp.text
        return {c["word"]: c["score"] for c in resp.json()["candidates"]}

    plain = candidates({})
    after = candidates({"previous": "For The"})
    assert after == candidates({"previous": "the,"}, "application/vnd.swipefl+json")
    assert list(after.values()) == sorted(after.values(), reverse=True)
    shared = sorted(set(plain) & set(after))
    assert len(shared) >= 3
    bonus = dict(zip(shared, shipped_context("en").bonus("the", shared)))
    for word in shared:
        assert after[word] == pytest.approx(plain[word] + bonus[word], abs=1e-9)
    assert max(bonus.values()) - min(bonus.values()) > 0.1  # word by word, not a constant
    for nothing in ("qqqq", "  ", "the qqqq", "!"):
        assert candidates({"previous": nothing}) == plain


def test_predict_shortcut_answers_as_the_route_does(client, swipes):
    """`application/json` is answered by serve.predict_shortcut; `application/vnd.x+json` goes
    to the FastAPI route. Same answer, same errors, and the request metrics label both."""
    import json

    body = json.dumps({**unlabelled(swipes[2]), "k": 5})
    answers = {}
    for content_type in ("application/json", "application/vnd.swipefl+json"):
        resp = client.post("/api/v1/predict", content=body, headers={"Content-Type": content_type})
        assert resp.status_code == 200, resp.text
        answers[content_type] = (resp.json(), resp.headers["X-Model-Version"])
    assert answers["application/json"] == answers["application/vnd.swipefl+json"]
    for content_type in ("application/json", "application/vnd.swipefl+json"):
        bad = client.post(
            "/api/v1/predict",
            content=json.dumps({**unlabelled(swipes[2]), "k": 99}),
            headers={"Content-Type": content_type},
        )
        assert_error(bad, 422, "INVALID_REQUEST")
        broken = client.post(
            "/api/v1/predict", content=b"{", headers={"Content-Type": content_type}
        )
        assert_error(broken, 422, "INVALID_REQUEST")
    text = client.get("/metrics").text
    labels = {"route": "/api/v1/predict", "status": "200"}
    assert metric_value(text, "swipefl_http_request_duration_seconds_count", labels) >= 2


def test_predict_needs_the_token(sidecar, swipes):
    """Answers come from the personalized model and the user's words: no token, no answer
    (docs/sidecar.md, "The door"), on the shortcut and on the route alike."""
    for content_type in ("application/json", "application/vnd.swipefl+json"):
        resp = httpx.post(
            sidecar.url + "/api/v1/predict",
            content=json.dumps(unlabelled(swipes[0])),
            headers={"Content-Type": content_type},
        )
        assert_error(resp, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda s: {**s, "points": s["points"][:1]}, "TOO_FEW_POINTS"),
        (lambda s: {**s, "points": s["points"] * 0 + [s["points"][0]] * 301}, "TOO_MANY_POINTS"),
        (
            lambda s: {**s, "points": [{"x": 1, "y": 1, "t": 10}, {"x": 2, "y": 2, "t": 5}]},
            "DECREASING_TIME",
        ),
        (
            lambda s: {**s, "points": [{"x": 1, "y": 1, "t": 0}, {"x": 5000, "y": 2, "t": 5}]},
            "OUT_OF_BOUNDS",
        ),
        (lambda s: {**s, "keyboard": {**s["keyboard"], "layout": "dvorak-xx"}}, "UNKNOWN_LAYOUT"),
        (
            lambda s: {**s, "keyboard": {"layout": "qwerty-en", "width": -1, "height": 200}},
            "INVALID_KEYBOARD",
        ),
        (
            lambda s: {
                "points": trace_for("hello"),
                "keyboard": {"layout": "jcuken-ru", "width": 375, "height": 217},
            },
            "UNSUPPORTED_LANGUAGE",
        ),
    ],
)
def test_predict_invalid_swipe(client, swipes, mutate, reason):
    resp = client.post("/api/v1/predict", json=mutate(unlabelled(swipes[0])))
    body = assert_error(resp, 422, "INVALID_SWIPE")
    assert body["reason"] == reason


def test_predict_non_finite(client):
    raw = (
        '{"points": [{"x": NaN, "y": 1, "t": 0}, {"x": 2, "y": 2, "t": 5}],'
        ' "keyboard": {"layout": "qwerty-en", "width": 375, "height": 217}}'
    )
    resp = client.post("/api/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert assert_error(resp, 422, "INVALID_SWIPE")["reason"] == "NON_FINITE"


@pytest.mark.parametrize(
    "body",
    [
        {"keyboard": KEYBOARD},  # no points
        {"points": [{"x": 1, "y": 1}], "keyboard": KEYBOARD},  # no t
        {"points": "abc", "keyboard": KEYBOARD},
        {"points": [], "keyboard": KEYBOARD, "k": 0},
        {"points": [], "keyboard": KEYBOARD, "k": 99},
        {"points": [], "keyboard": KEYBOARD, "previous": "w" * 257},
        {"points": [], "keyboard": KEYBOARD, "previous": 12},
        [1, 2, 3],
    ],
)
def test_predict_schema_errors(client, body):
    body = assert_error(client.post("/api/v1/predict", json=body), 422, "INVALID_REQUEST")
    assert body["errors"] and "input" not in body["errors"][0]


def test_predict_bad_json(client):
    resp = client.post(
        "/api/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(resp, 422, "INVALID_REQUEST")


def test_payload_too_large(client):
    big = {
        "points": [{"x": 1.0, "y": 1.0, "t": float(i)} for i in range(10_000)],
        "keyboard": KEYBOARD,
    }
    assert_error(client.post("/api/v1/predict", json=big), 413, "PAYLOAD_TOO_LARGE")
    # Without a Content-Length (chunked): counted while reading.
    data = json.dumps(big).encode()

    def chunks():
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    resp = client.post(
        "/api/v1/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE")


# -- swipes --------------------------------------------------------------------------------------


def test_store_one_and_batch(client, swipes):
    resp = client.post("/api/v1/swipes", json=swipes[0])
    assert resp.status_code == 202, resp.text
    (one,) = resp.json()["ids"]
    resp = client.post("/api/v1/swipes", json={"swipes": swipes[1:6]})
    assert resp.status_code == 202
    ids = resp.json()["ids"]
    assert len(ids) == 5 and len(set(ids)) == 5 and one not in ids


def test_idempotency_key(client, swipes):
    stats0 = client.get("/api/v1/stats").json()["swipes"]["total"]
    headers = {"Idempotency-Key": "req-123"}
    first = client.post("/api/v1/swipes", json={"swipes": swipes[6:9]}, headers=headers)
    again = client.post("/api/v1/swipes", json={"swipes": swipes[6:9]}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    single = {"Idempotency-Key": "req-124"}
    a = client.post("/api/v1/swipes", json=swipes[9], headers=single).json()
    b = client.post("/api/v1/swipes", json=swipes[9], headers=single).json()
    assert a == b
    assert client.get("/api/v1/stats").json()["swipes"]["total"] == stats0 + 4
    bad = client.post("/api/v1/swipes", json=swipes[9], headers={"Idempotency-Key": "x" * 201})
    assert_error(bad, 422, "INVALID_REQUEST")


def test_store_invalid_swipe(client, swipes):
    body = assert_error(
        client.post("/api/v1/swipes", json={**swipes[0], "word": "Hello!"}),
        422,
        "INVALID_SWIPE",
    )
    assert body["reason"] == "WORD_OUTSIDE_ALPHABET"
    assert "Hello" not in body["message"]
    batch = [swipes[0], {**swipes[1], "points": swipes[1]["points"][:1]}]
    body = assert_error(client.post("/api/v1/swipes", json={"swipes": batch}), 422, "INVALID_SWIPE")
    assert body["reason"] == "TOO_FEW_POINTS" and body["index"] == 1
    assert_error(client.post("/api/v1/swipes", json=unlabelled(swipes[0])), 422, "INVALID_REQUEST")
    assert_error(client.post("/api/v1/swipes", json={"swipes": []}), 422, "INVALID_REQUEST")


def test_batch_too_large(client, swipes):
    resp = client.post("/api/v1/swipes", json={"swipes": [swipes[0]] * 9})
    assert assert_error(resp, 413, "PAYLOAD_TOO_LARGE")["reason"] == "BATCH_TOO_LARGE"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/api/v1/predict", "unlabelled"),
        ("POST", "/api/v1/swipes", "swipe"),
        ("DELETE", "/api/v1/swipes", None),
        ("POST", "/api/v1/model/reload", None),
        ("POST", "/api/v1/train", None),
        ("POST", "/api/v1/lexicon/words", {"words": ["abc"]}),
        ("GET", "/api/v1/lexicon/words", None),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", TOKEN])
def test_unauthorized(sidecar, swipes, method, path, body, auth):
    headers = {"Content-Type": "application/json"}  # state-changing requests need JSON
    if auth == TOKEN:
        headers["Authorization"] = TOKEN  # the token without the Bearer scheme
    elif auth:
        headers["Authorization"] = auth
    named = {"swipe": swipes[0], "unlabelled": unlabelled(swipes[0])}
    payload = named[body] if isinstance(body, str) else body
    resp = httpx.request(method, sidecar.url + path, json=payload, headers=headers)
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_delete_swipes(client, swipes):
    client.post("/api/v1/swipes", json={"swipes": swipes[10:13]})
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    assert client.delete("/api/v1/swipes", params={"older_than": past}).json() == {"deleted": 0}
    total = client.get("/api/v1/stats").json()["swipes"]["total"]
    assert total >= 3
    resp = client.delete("/api/v1/swipes", params={"older_than": future})
    assert resp.json() == {"deleted": total}
    client.post("/api/v1/swipes", json={"swipes": swipes[10:12]})
    assert client.delete("/api/v1/swipes").json() == {"deleted": 2}
    assert client.get("/api/v1/stats").json()["swipes"]["total"] == 0
    assert_error(
        client.delete("/api/v1/swipes", params={"older_than": "yesterday"}), 422, "INVALID_REQUEST"
    )


# -- stats and model -----------------------------------------------------------------------------


def test_stats(client, swipes):
    client.post("/api/v1/predict", json=unlabelled(swipes[0]))
    client.post("/api/v1/swipes", json={"swipes": swipes[13:16]})
    stats = client.get("/api/v1/stats").json()
    assert stats["swipes"]["total"] >= 3
    assert stats["swipes"]["new_since_training"] == stats["swipes"]["total"]
    assert stats["predictions_served"] >= 1
    model = stats["model"]
    assert model["loaded"] and model["version"]["round"] == 3
    assert model["metrics"]["release"] == {"top1": 0.42, "mrr": 0.5}
    assert model["last_reload_at"] is not None
    assert "personalization" in stats and "personal_words" in stats


def test_model_and_reload(client):
    model = client.get("/api/v1/model").json()
    assert model["loaded"] and model["version"]["run_id"] == "run-a"
    resp = client.post("/api/v1/model/reload")
    assert resp.status_code == 200
    assert resp.json()["result"] == "unchanged"


def test_not_found_and_method(client):
    assert_error(client.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert_error(client.get("/api/v1/train/no-such-job"), 404, "NOT_FOUND")
    assert_error(client.put("/api/v1/predict", json={}), 405, "METHOD_NOT_ALLOWED")


# -- personal words ------------------------------------------------------------------------------


def test_personal_words_decodable_at_once(client, sidecar):
    word = "kwyjibo"
    req = {"points": trace_for(word), "keyboard": KEYBOARD, "k": 8}
    before = [c["word"] for c in client.post("/api/v1/predict", json=req).json()["candidates"]]
    assert word not in before
    resp = client.post("/api/v1/lexicon/words", json={"words": [word, "plokij"], "freq": 0.01})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"language": "en", "added": 2, "total": 2, "active": True}
    after = [c["word"] for c in client.post("/api/v1/predict", json=req).json()["candidates"]]
    assert word in after
    again = client.post("/api/v1/lexicon/words", json={"words": [word]}).json()
    assert again["added"] == 0 and again["total"] == 2
    assert client.get("/api/v1/lexicon/words").json() == {"words": {"en": ["kwyjibo", "plokij"]}}
    saved = json.loads((sidecar.device_dir / "words.json").read_text())
    assert sorted(saved["words"]["en"]) == ["kwyjibo", "plokij"]


def test_personal_words_invalid(client):
    body = assert_error(
        client.post("/api/v1/lexicon/words", json={"words": ["ok", "Bad1"]}), 422, "INVALID_WORD"
    )
    assert body["index"] == 1 and "Bad1" not in body["message"]
    assert_error(
        client.post("/api/v1/lexicon/words", json={"words": ["ok"], "language": "xx"}),
        422,
        "INVALID_WORD",
    )
    assert_error(client.post("/api/v1/lexicon/words", json={"words": []}), 422, "INVALID_REQUEST")


# -- logs ----------------------------------------------------------------------------------------


def test_logs_are_json_without_words_or_traces(sidecar, client, swipes):
    marker = "zymurgyq"
    trace_x = 123.456789
    swipe = {
        "points": [{"x": trace_x, "y": 10.0, "t": 0}, {"x": 200.0, "y": 12.0, "t": 50}],
        "keyboard": KEYBOARD,
        "word": marker,
    }
    assert client.post("/api/v1/swipes", json=swipe).status_code == 202
    client.post("/api/v1/swipes", json={**swipe, "word": marker + "X"})  # 422
    client.post("/api/v1/predict", json=unlabelled(swipe))
    client.post("/api/v1/lexicon/words", json={"words": [marker]})
    logs = sidecar.logs()
    assert marker not in logs and str(trace_x) not in logs
    lines = [ln for ln in logs.splitlines() if ln.strip()]
    parsed = [json.loads(ln) for ln in lines]  # every line is a JSON object
    assert any(p.get("route") == "/api/v1/swipes" and p.get("status") == 202 for p in parsed)
    assert TOKEN not in logs
