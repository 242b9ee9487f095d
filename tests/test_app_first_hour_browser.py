"""A new user's first hour in the app (issue 17), in headless Chromium.

- an app started like ``graft-vqa app --allow-untrained`` without weights (tiny random GRAFT): the
  banner from page load, the UNTRAINED badge on each answer, SAM unticked, the GSD advice for a PNG;
- an app with a slow synthetic scorer: the question shows at once, one progress bar through real steps.
"""
from __future__ import annotations

import os
import re

import pytest
from PIL import Image

from graft_vqa.config import EngineConfig
from graft_vqa.interfaces.app import AppOptions, UISettings, build_app
from tests.browser import page as ui
from tests.browser.fakes import slow_blob_engine_factory
from tests.browser.server import chromium, running_app, save_artifact

pytestmark = pytest.mark.browser

RGBN, NEON = "rgbn_5m_utm18n.tif", "neon_osbs_029_10cm.tif"
SLOW_S = 4.0  # the slow scorer's delay per call: long enough to watch the question being answered


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Uploads under tmp_path, and a home without weights while the apps are built."""
    work = tmp_path_factory.mktemp("first_hour")
    saved = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRAFT_VQA_HOME", "GRAFT_VQA_WEIGHTS")}
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    os.environ["GRAFT_VQA_HOME"] = str(work / "home")
    os.environ.pop("GRAFT_VQA_WEIGHTS", None)
    try:
        yield work
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def untrained_url(environment):
    """The app as `graft-vqa app --allow-untrained` builds it, on a machine without weights (tiny GRAFT)."""
    config = EngineConfig(graft_model="graft-tiny", allow_untrained=True)
    app = build_app(options=AppOptions(engine=config, workdir_root=str(environment / "sessions")))
    with running_app(app) as url:
        yield url


@pytest.fixture(scope="module")
def slow_url(environment):
    factory = slow_blob_engine_factory({400: {"building": 3}}, delay_s=SLOW_S)
    app = build_app(factory, AppOptions(settings=UISettings(refine="none"), workdir_root=str(environment / "slow")))
    with running_app(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


FIRST_ANSWER_MS = 180_000  # the first answer loads the models (torch, tiny GRAFT) on a busy 2-core machine


def _answer(page, number: int) -> None:
    """Wait for the session's ``number``-th overlay; fail with the chat's text when an error came instead."""
    try:
        page.locator(f'#chat img[src$="/overlay_{number}.png"]').wait_for(timeout=FIRST_ANSWER_MS)
        ui.overlay_image(page, number)
    except Exception:  # noqa: BLE001 - say what the chat shows
        pytest.fail(f"no answer {number}; the chat shows: {page.locator('#chat').inner_text()[-1500:]}")


def _page(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(url)
    return context, page


def test_banner_from_page_load_and_an_untrained_badge_on_each_answer(untrained_url, environment, browser, shared_data,
                                                                     tmp_path):
    context, page = _page(browser, untrained_url)
    banner = page.locator("#weights-banner")
    banner.get_by_text("NOT meaningful").wait_for(timeout=ui.TIMEOUT_MS)  # before any upload or question
    text = banner.inner_text()
    assert "graft_naip_patch.ckpt" in text and f"{environment / 'home' / 'weights'}/" in text and "restart the app" in text
    assert "sam_vit_b_01ec64.pth" in text
    page.locator("#settings").get_by_text("Settings").first.click()
    sam_box = page.locator("#refine-sam input[type=checkbox]")
    sam_box.wait_for(timeout=ui.TIMEOUT_MS)
    assert not sam_box.is_checked()  # no SAM weights: not ticked
    ui.upload(page, shared_data / "tiles" / RGBN)
    ui.wait_for_tile(page, RGBN)
    ui.ask(page, "Count the cars please")
    _answer(page, 1)
    badges = page.locator("#chat .untrained-badge")
    assert badges.count() == 1 and badges.first.is_visible()
    colour = badges.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(185, 28, 28)"  # red, beside the answer, not in a collapsed section
    chat = page.locator("#chat").inner_text()
    assert chat.count("cars please") == 1  # the user's own words, never searched for
    page.locator("#chat").get_by_text("Program").first.click()
    page.locator("#chat").get_by_text('find("car")').first.wait_for(timeout=ui.TIMEOUT_MS)
    assert re.search(r"loading models \d+\.\d\d s", chat)
    ui.ask(page, "Is there a road?")
    _answer(page, 2)
    assert page.locator("#chat .untrained-badge").count() == 2  # on each answer
    page.locator("#chat .untrained-badge").last.scroll_into_view_if_needed()
    shot = tmp_path / "first_hour_untrained.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)
    context.close()


def test_a_png_area_question_points_to_the_gsd_field_in_settings(untrained_url, browser, shared_data, tmp_path):
    png = tmp_path / "forest.png"
    Image.open(shared_data / "tiles" / NEON).convert("RGB").save(png)
    context, page = _page(browser, untrained_url)
    ui.upload(page, png)
    ui.wait_for_tile(page, "forest.png")
    ui.ask(page, "How much of the picture is forest?")
    chat = ui.wait_for_text(page, "What to do")
    assert 'Set "GSD (m/px)" in Settings' in chat and "GSD (m/px) 10.0 in Settings" in chat
    for wrong in ("load_tile", "gsd_m", "--gsd-m", "Rephrase", "other planner", "/gradio/"):
        assert wrong not in chat, wrong
    page.locator("#chat").get_by_text("What to do").last.scroll_into_view_if_needed()
    shot = tmp_path / "first_hour_png_gsd.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)
    page.locator("#settings").get_by_text("Settings").first.click()  # follow the advice: GSD 0.1 m/px
    gsd = page.get_by_label("GSD (m/px) for images without georeferencing")
    gsd.fill("0.1")
    gsd.press("Tab")
    ui.ask(page, "How much of the picture is forest?")
    _answer(page, 2)
    assert re.search(r"\d+(\.\d)?%", " ".join(ui.bold_texts(page)))  # now a share of the image
    context.close()


def test_the_question_shows_at_once_with_one_progress_bar(slow_url, browser, shared_data, tmp_path):
    context, page = _page(browser, slow_url)
    ui.upload(page, shared_data / "tiles" / NEON)
    ui.wait_for_tile(page, NEON)
    ui.ask(page, "How many buildings are there?")
    page.locator("#chat").get_by_text("How many buildings are there?").wait_for(timeout=SLOW_S * 500)
    assert page.locator('#chat img[src*="overlay_"]').count() == 0  # shown before the answer
    progress = page.locator(".progress-text, .progress-level").filter(has_text="Running the program")
    progress.first.wait_for(timeout=ui.TIMEOUT_MS)
    page.locator(".progress-bar").first.wait_for(state="visible", timeout=ui.TIMEOUT_MS)  # drawn just after its text
    bars = [b for b in page.locator(".progress-bar").all() if b.is_visible()]
    assert len(bars) == 1  # one bar, over the chat (not also over the question box and the download)
    chat_box = page.locator("#chat").bounding_box()
    bar_box = bars[0].bounding_box()
    assert chat_box["y"] <= bar_box["y"] <= chat_box["y"] + chat_box["height"]
    assert page.locator("#ask").is_disabled()  # one question at a time
    shot = tmp_path / "first_hour_progress.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)
    ui.overlay_image(page, 1)
    assert "3" in ui.bold_texts(page) and page.locator("#ask").is_enabled()
    context.close()
