"""The demo page in a real browser (headless Chromium, tests/browser.py) against a real sidecar
serving the shipped base decoder with a token: a person's swipe through the page's own keyboard
gets the swiped word among the candidates, committing it stores a labelled swipe with the drawn
keyboard's geometry and the stats count it, a wrong token says so, and personal words and
personalization run from the page.

Each run saves a screenshot of the page with a swipe and its candidates (path printed; run with
`-s` to see it); docs/demo.png is one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from browser import chromium, key_centres, swipe, text_of
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import SidecarProcess, synthetic_swipes

from fl_app.base import has_base
from fl_app.swipes.store import SwipeStore

TOKEN = "demo-test-token"
WAIT_S = 90  # a cold prediction on a busy 2-core machine


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory) -> Iterator[SidecarProcess]:
    assert has_base("en"), "the demo needs the shipped base decoder in fl_app/base/en/"
    proc = SidecarProcess(tmp_path_factory.mktemp("demo-sidecar"), token=TOKEN, serve_base="true")
    proc.start(wait_ready=True, timeout=240)
    yield proc
    proc.stop()


def open_page(driver, sidecar: SidecarProcess, token: str | None) -> None:
    """Load the page at the sidecar's address and, when given, type the token into its prompt."""
    driver.get(sidecar.url + "/")  # the bare address opens the demo
    assert driver.current_url == sidecar.url + "/demo"
    if token is not None:
        wait(driver, lambda d: d.find_element(By.ID, "token-panel").is_displayed())
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "token-save").click()


def wait(driver, condition, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def candidates(driver) -> list[str]:
    return [
        b.get_attribute("data-word")
        for b in driver.find_elements(By.CSS_SELECTOR, "#candidates button")
    ]


def swipe_word(
    driver, word: str, kind: str = interaction.POINTER_MOUSE, bow: float = 0.0
) -> list[str]:
    """Swipe through the drawn keys of `word`; the candidates the page then shows."""
    driver.execute_script(
        "document.getElementById('candidates').replaceChildren();"
        "const m = document.getElementById('message'); m.textContent = ''; m.className = '';"
    )
    swipe(driver, key_centres(driver, word), kind=kind, bow=bow)
    wait(
        driver,
        lambda d: (
            candidates(d) or "error" in d.find_element(By.ID, "message").get_attribute("class")
        ),
    )
    return candidates(driver)


def swipes_stored(driver) -> int:
    return int(text_of(driver, "stat-total").split()[0])


def overlay_colours(driver) -> dict[str, int]:
    """Pixels of the trace (blue) and of the ideal path (orange) on the keyboard's overlay."""
    return driver.execute_script(
        """
        const c = document.getElementById('trace');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0, orange = 0;
        for (let i = 0; i < px.length; i += 4) {
          const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
          if (a < 100) continue;
          if (b > 150 && r < 120) blue++;
          if (r > 180 && g > 60 && g < 130 && b < 60) orange++;
        }
        return {blue, orange};
        """
    )


def test_a_swiped_word_is_shown_and_committing_it_stores_a_labelled_swipe(sidecar, tmp_path):
    with chromium(tmp_path / "profile", 900, 1000) as driver:
        open_page(driver, sidecar, TOKEN)
        wait(driver, lambda d: "Token accepted" in text_of(d, "message"))
        wait(driver, lambda d: text_of(d, "stat-total") != "-")
        before = swipes_stored(driver)

        # Through the centres of its letters' keys, each stroke a slight arc as a hand draws it.
        words = swipe_word(driver, "hello", bow=12)
        assert "hello" in words, (words, text_of(driver, "message"))
        assert len(words) == 4
        scores = [
            b.find_element(By.CLASS_NAME, "score").text
            for b in driver.find_elements(By.CSS_SELECTOR, "#candidates button")
        ]
        assert all(re.fullmatch(r"-?\d+\.\d\d", s) for s in scores), scores
        assert text_of(driver, "model-version") == "shipped base"
        # The ideal path of the top word is drawn over the trace, and the legend says so.
        assert f'"{words[0]}"' in text_of(driver, "legend")
        drawn = overlay_colours(driver)
        assert drawn["blue"] > 500 and drawn["orange"] > 100, drawn

        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        print(f"\ndemo page screenshot: {shot}")

        driver.find_element(By.CSS_SELECTOR, '#candidates button[data-word="hello"]').click()
        wait(driver, lambda d: 'Saved "hello"' in text_of(d, "message"))
        wait(driver, lambda d: swipes_stored(d) == before + 1)
        assert text_of(driver, "typed") == "hello"
        board_width = driver.execute_script(
            "return parseFloat(document.getElementById('keyboard').style.width)"
        )
        # Nothing came from anywhere but the sidecar.
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(url.startswith(sidecar.url + "/") for url in loaded), loaded
        # No script error along the way (refused requests are logged as network entries).
        errors = [e for e in driver.get_log("browser") if e.get("source") != "network"]
        assert not errors, errors

    with SwipeStore(sidecar.device_dir / "swipes.sqlite") as store:
        stored = store.load()[-1].swipe
    assert stored.word == "hello"
    # The drawn keyboard's geometry went with the swipe: the named layout at the drawn size.
    assert stored.keyboard.layout == "qwerty-en" and stored.keyboard.width == board_width
    assert len(stored.points) > 20


def test_a_wrong_token_is_named_and_the_right_one_works_on_a_phone(sidecar, tmp_path):
    with chromium(tmp_path / "profile", 390, 844, phone=True) as driver:
        open_page(driver, sidecar, "not-the-token")
        wait(driver, lambda d: "refused the API token" in text_of(d, "token-message"))
        assert driver.find_element(By.ID, "token-panel").is_displayed()
        # A swipe with the wrong token is not silently dropped either.
        assert swipe_word(driver, "the", kind=interaction.POINTER_TOUCH) == []
        message = driver.find_element(By.ID, "message")
        assert "refused the API token (401)" in message.text
        assert message.get_attribute("class") == "error"

        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "token-save").click()
        wait(driver, lambda d: "Token accepted" in text_of(d, "message"))
        assert not driver.find_element(By.ID, "token-panel").is_displayed()
        # Typed once: kept for the tab (sessionStorage), so a reload asks no more.
        driver.refresh()
        wait(driver, lambda d: text_of(d, "stat-total") != "-")
        assert driver.execute_script("return sessionStorage.length") == 1
        words = swipe_word(driver, "the", kind=interaction.POINTER_TOUCH)
        assert "the" in words, (words, text_of(driver, "message"))
        assert not driver.find_element(By.ID, "token-panel").is_displayed()
        # The keyboard fits the phone's width.
        width = driver.execute_script(
            "return document.getElementById('keyboard').getBoundingClientRect().right"
        )
        assert width <= 390


@pytest.mark.slow
def test_personal_words_and_personalization_run_from_the_page(sidecar, tmp_path):
    with httpx.Client(base_url=sidecar.url, headers=sidecar.headers(), timeout=60) as client:
        r = client.post("/api/v1/swipes", json={"swipes": synthetic_swipes(40, seed=3)})
        assert r.status_code == 202, r.text
    with chromium(tmp_path / "profile", 900, 1000) as driver:
        open_page(driver, sidecar, TOKEN)
        wait(driver, lambda d: "Token accepted" in text_of(d, "message"))

        driver.find_element(By.ID, "words-input").send_keys("zorblax")
        driver.find_element(By.CSS_SELECTOR, "#words-form button").click()
        wait(driver, lambda d: "decodable now" in text_of(d, "words-status"))
        assert "zorblax" in swipe_word(driver, "zorblax")

        driver.find_element(By.ID, "train").click()
        wait(
            driver,
            lambda d: (
                "Personalizing" in text_of(d, "train-status")
                or "ccepted" in text_of(d, "train-status")
            ),
        )
        wait(
            driver,
            lambda d: re.match(
                r"(Accepted|Not accepted) \(held-out MRR [\d.]+ → [\d.]+\)",
                text_of(d, "train-status"),
            ),
            timeout=300,
        )
        outcome = (
            "accepted" if text_of(driver, "train-status").startswith("Accepted") else "rejected"
        )
        wait(driver, lambda d: text_of(d, "stat-personal") == f"last job: {outcome}", timeout=30)
