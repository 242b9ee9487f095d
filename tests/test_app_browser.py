"""End-to-end: the Gradio app in headless Chromium, with a synthetic scorer (no weights)."""
from __future__ import annotations

import os

import pytest

from graft_vqa.interfaces.app import AppOptions, UISettings, build_app
from tests.browser import page as ui
from tests.browser.fakes import blob_engine_factory
from tests.browser.server import chromium, running_app, save_artifact, uploads_under

pytestmark = pytest.mark.browser

# tile width -> the blobs the synthetic scorer paints: the expected answers, by construction
BLOBS = {400: {"building": 3}, 515: {"building": 5, "water": 1}, 485: {"building": 4}}
NEON, RGBN, RMNP = "neon_osbs_029_10cm.tif", "rgbn_5m_utm18n.tif", "rmnp_rgb_epsg4326.tif"
COUNT_Q = "How many buildings are there?"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("app")
    factory = blob_engine_factory(BLOBS)
    with uploads_under(work / "gradio"):  # uploads land under tmp_path
        app = build_app(factory, AppOptions(max_upload_mb=20, settings=UISettings(refine="none"),
                                            workdir_root=str(work / "sessions")))
        with running_app(app, max_upload_mb=20) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _page(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(url)
    return context, page


def test_upload_ask_and_see_answer_overlay_program_geojson(app_url, browser, shared_data, tmp_path):
    context, page = _page(browser, app_url)
    ui.upload(page, shared_data / "tiles" / NEON)
    info = ui.wait_for_tile(page, NEON)
    assert "400 × 400" in info and "EPSG:32617" in info and "0.1 m/px" in info
    assert page.locator("#tile-preview img").count() == 1
    ui.ask(page, COUNT_Q)
    overlay = ui.overlay_image(page, 1)
    box = overlay.bounding_box()
    assert box["width"] > 100 and box["height"] > 100  # visible on the page, not a broken icon
    assert "3" in ui.bold_texts(page)
    chat = page.locator("#chat").inner_text()
    assert "Program" in chat and ".geojson" in chat
    assert page.locator("#geojson a[href*='.geojson']").count() >= 1
    assert not page.get_by_text("execute_command").first.is_visible()  # the program starts collapsed
    page.locator("#chat").get_by_text("Program").first.click()
    page.locator("#chat").get_by_text('find("building")').first.wait_for(timeout=ui.TIMEOUT_MS)
    page.locator("#settings").get_by_text("Settings").first.click()  # open the panel for the screenshot
    page.get_by_text("Score threshold").wait_for(timeout=ui.TIMEOUT_MS)
    assert page.get_by_label("openai").count() == 1
    shot = tmp_path / "app_answer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert save_artifact(shot).stat().st_size > 10_000
    context.close()


def test_two_sessions_get_their_own_tiles_and_answers(app_url, browser, shared_data, tmp_path):
    (ctx_a, a), (ctx_b, b) = _page(browser, app_url), _page(browser, app_url)
    ui.upload(a, shared_data / "tiles" / NEON)
    ui.upload(b, shared_data / "tiles" / RGBN)
    ui.wait_for_tile(a, NEON)
    ui.wait_for_tile(b, RGBN)
    ui.ask(a, COUNT_Q)
    ui.ask(b, COUNT_Q)  # both in flight at once
    ui.overlay_image(a, 1)
    ui.overlay_image(b, 1)
    assert "3" in ui.bold_texts(a) and "5" not in ui.bold_texts(a)
    assert "5" in ui.bold_texts(b) and "3" not in ui.bold_texts(b)
    assert RGBN not in a.locator("#chat").inner_text() and NEON not in b.locator("#chat").inner_text()
    b.screenshot(path=str(tmp_path / "app_second_session.png"), full_page=True)
    save_artifact(tmp_path / "app_second_session.png")
    ctx_a.close()
    ctx_b.close()


def test_bad_upload_is_a_chat_error_then_a_valid_question_works(app_url, browser, shared_data, tmp_path):
    bad = tmp_path / "not_a_tile.tif"
    bad.write_text("just some text, not a raster\n")
    context, page = _page(browser, app_url)
    ui.upload(page, bad)
    chat = ui.wait_for_text(page, "Could not load not_a_tile.tif")
    assert "What to do" in chat and "GeoTIFF" in chat
    assert "/gradio/" not in chat and os.environ["GRADIO_TEMP_DIR"] not in chat  # the name, not the server's path
    ui.ask(page, COUNT_Q)  # no tile yet: told to upload one, the server keeps serving
    ui.wait_for_text(page, "Upload a tile first")
    ui.upload(page, shared_data / "tiles" / RMNP)
    assert "EPSG:4326" in ui.wait_for_tile(page, RMNP)
    ui.ask(page, COUNT_Q)
    ui.overlay_image(page, 1)
    assert "4" in ui.bold_texts(page)
    page.screenshot(path=str(tmp_path / "app_bad_upload.png"), full_page=True)
    save_artifact(tmp_path / "app_bad_upload.png")
    context.close()
