"""End-to-end in headless Chromium: the Search tab and the Segment action (synthetic embedder and scorer)."""
from __future__ import annotations

import pytest

import graft_vqa
from graft_vqa.interfaces.app import AppOptions, UISettings, build_app
from tests.browser import page as ui
from tests.browser.fakes import blob_engine_factory
from tests.browser.server import chromium, running_app, save_artifact, uploads_under
from tests.embedders import ColourEmbedder, solid, write_raster

pytestmark = pytest.mark.browser
NEON = "neon_osbs_029_10cm.tif"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("app_search")
    tiles = work / "tiles"
    tiles.mkdir()
    write_raster(tiles / "red.tif", solid((230, 20, 20)))
    write_raster(tiles / "green.tif", solid((20, 220, 20)), crs="EPSG:4326", origin=(-75.5, 40.7), pixel=0.001)
    graft_vqa.build_index(tiles, work / "idx", embedder=ColourEmbedder())
    options = AppOptions(max_upload_mb=20, settings=UISettings(refine="none"), workdir_root=str(work / "sessions"),
                         index=str(work / "idx"))
    with uploads_under(work / "gradio"):
        app = build_app(blob_engine_factory({400: {"building": 3}}), options, embedder_factory=ColourEmbedder)
        with running_app(app, max_upload_mb=20) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_search_tab_shows_chips_scores_and_footprints(app_url, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(app_url)
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-text textarea").fill("green")
    page.locator("#search-button").click()
    page.locator("#search-status").get_by_text("2 chip(s)").wait_for(timeout=ui.TIMEOUT_MS)
    page.locator("#search-gallery img").first.wait_for(timeout=ui.TIMEOUT_MS)
    assert page.locator("#search-gallery img").count() >= 2
    table = page.locator("#search-table").inner_text()
    assert table.index("green.tif") < table.index("red.tif") and "-75.50000" in table
    assert page.locator("#search-geojson a[href*='.geojson']").count() == 1
    shot = tmp_path / "app_search.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)
    context.close()


def test_segment_action_offers_geotiff_and_geopackage(app_url, browser, shared_data, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(app_url)
    ui.upload(page, shared_data / "tiles" / NEON)
    ui.wait_for_tile(page, NEON)
    page.locator("#segment-text textarea").fill("building")
    page.locator("#segment-button").click()
    ui.wait_for_text(page, r"3 instance\(s\)")
    files = page.locator("#segment-files")
    files.locator("a[href*='.gpkg']").wait_for(timeout=ui.TIMEOUT_MS)
    assert files.locator("a[href*='.tif']").count() == 1
    page.locator('#chat img[src$="/segment_overlay_1.png"]').wait_for(timeout=ui.TIMEOUT_MS)
    shot = tmp_path / "app_segment.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)
    context.close()
