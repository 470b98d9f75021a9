"""A real browser for the demo page's tests: Debian's Chromium, headless, driven by Selenium
through Debian's chromedriver (both installed by scripts/setup).

Nothing is downloaded at run time: the driver's path is given, so Selenium Manager is never
asked, and the browser runs with its network-facing background services off. A missing browser
is a broken setup, so the tests fail with what to install rather than skip.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"the browser tests need Debian's Chromium and its driver ({', '.join(missing)} "
            "missing): run scripts/setup as root, or apt-get install chromium chromium-driver"
        )


@contextmanager
def chromium(
    profile: Path, width: int, height: int, *, phone: bool = False
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile and a window of width x height CSS px; `phone`:
    a touch screen of that size at pixel ratio 2 (Chromium's device emulation)."""
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if phone:
        metrics = {"width": width, "height": height, "pixelRatio": 2.0, "touch": True}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile) + ".driver.log")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def viewport_rect(driver: webdriver.Chrome, element_id: str) -> dict[str, float]:
    """An element's box in viewport px (where pointer actions land)."""
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {x: r.left, y: r.top, w: r.width, h: r.height};",
        element_id,
    )


def key_centres(driver: webdriver.Chrome, word: str) -> list[tuple[float, float]]:
    """Viewport centres of the drawn keys of a word's letters, as a person would aim."""
    centres = []
    for ch in word:
        r = viewport_rect(driver, f"key-{ch}")
        centres.append((r["x"] + r["w"] / 2, r["y"] + r["h"] / 2))
    return centres


def swipe(
    driver: webdriver.Chrome,
    via: Sequence[tuple[float, float]],
    *,
    kind: str = interaction.POINTER_MOUSE,
    steps: int = 10,
    step_ms: int = 16,
    bow: float = 0.0,
) -> None:
    """Press at the first point, move through the others in `steps` moves per segment (each
    `step_ms` long: real pointermove events with real timing), release at the last. `bow` px
    bends each segment sideways like a hand's arc, still through every point of `via`."""
    pointer = PointerInput(kind, "swiper")
    actions = ActionBuilder(driver, mouse=pointer, duration=step_ms)
    x0, y0 = via[0]
    actions.pointer_action.move_to_location(round(x0), round(y0))
    actions.pointer_action.pointer_down()
    for (ax, ay), (bx, by) in zip(via[:-1], via[1:]):
        length = math.hypot(bx - ax, by - ay) or 1.0
        nx, ny = -(by - ay) / length, (bx - ax) / length  # the segment's normal
        for i in range(1, steps + 1):
            f = i / steps
            side = bow * math.sin(math.pi * f)
            x, y = ax + f * (bx - ax) + side * nx, ay + f * (by - ay) + side * ny
            actions.pointer_action.move_to_location(round(x), round(y))
    actions.pointer_action.pointer_up()
    actions.perform()


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text
