"""End-to-end in headless Chromium: a scene (a raster above ``scene_pixels``) uploaded to the app, its
decimated preview shown, a question answered window by window with the overlay on the preview."""
from __future__ import annotations

import os

import pytest
from affine import Affine

from graft_vqa import Engine
from graft_vqa.config import EngineConfig
from graft_vqa.interfaces.app import AppOptions, UISettings, build_app
from tests.browser import page as ui
from tests.browser.server import chromium, running_app

from .fixtures.scenes import SceneRects, write_scene
from .test_app_scene import HEIGHT, OBJECTS, PREVIEW, SCENE_PIXELS, WIDTH

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def scene_app(tmp_path_factory):
    work = tmp_path_factory.mktemp("app_scene")
    path = write_scene(work / "scene.tif", HEIGHT, WIDTH, "EPSG:32617", Affine(0.5, 0, 400000.0, 0, -0.5, 3300000.0))
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")

    def factory(settings):
        return Engine(scorer=SceneRects(OBJECTS), refine="none", threshold=0.25, feature_cache=False,
                      scene_pixels=SCENE_PIXELS)

    options = AppOptions(max_upload_mb=20, preview_max_side=PREVIEW, settings=UISettings(refine="none"),
                         workdir_root=str(work / "sessions"), engine=EngineConfig(scene_pixels=SCENE_PIXELS))
    try:
        with running_app(build_app(factory, options), max_upload_mb=20) as url, chromium() as browser:
            yield url, browser, path
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def test_a_scene_uploads_as_a_preview_and_is_answered_on_it(scene_app):
    url, browser, path = scene_app
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(url)
    ui.upload(page, path)
    info = ui.wait_for_tile(page, path.name)
    assert "3200 × 2400 px" in info and "window by window" in info and "preview 800 × 600" in info
    preview = page.locator("#tile-preview img")
    preview.wait_for(timeout=ui.TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle(),
                           timeout=ui.TIMEOUT_MS)
    assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [800, 600]
    ui.ask(page, "How many buildings are there?")
    overlay = ui.overlay_image(page, 1)
    assert "3" in ui.bold_texts(page)
    assert overlay.evaluate("img => img.naturalWidth") == 800
    context.close()
