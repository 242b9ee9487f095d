"""``python app.py`` options: defaults are local-only, and options reach the app and the server."""
from __future__ import annotations

import graft_vqa.interfaces.app.blocks as blocks
from graft_vqa.interfaces.app.cli import build_parser, main


def test_defaults_are_local_and_private():
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    assert args.max_upload_mb > 0 and args.planner == "rules" and args.preview_max_side == 2048


def test_main_passes_options_to_the_app_and_server(monkeypatch):
    seen = {}

    def fake_launch(app, **kwargs):
        seen["app"], seen["kwargs"] = app, kwargs

    built = {}
    real_build = blocks.build_app

    def spy_build(factory, options, embedder_factory=None):
        built["options"], built["factory"], built["embedder_factory"] = options, factory, embedder_factory
        return real_build(factory, options, embedder_factory=embedder_factory)

    monkeypatch.setattr(blocks, "launch", fake_launch)
    monkeypatch.setattr(blocks, "build_app", spy_build)
    status = main(["--host", "0.0.0.0", "--port", "8123", "--max-upload-mb", "5", "--threshold", "0.2",
                   "--refine", "none", "--graft-model", "graft-tiny", "--allow-untrained", "--index", "/data/idx",
                   "--preview-max-side", "1024", "--scene-pixels", "1000000"])
    assert status == 0
    assert seen["kwargs"] == {"host": "0.0.0.0", "port": 8123, "share": False, "max_upload_mb": 5.0}
    options = built["options"]
    assert options.max_upload_mb == 5.0 and options.settings.threshold == 0.2 and options.settings.refine == "none"
    assert options.index == "/data/idx" and callable(built["embedder_factory"])
    assert options.preview_max_side == 1024 and options.engine.scene_pixels == 1_000_000
    assert type(seen["app"]).__name__ == "Blocks"
    engine = built["factory"](options.settings)  # models load lazily: nothing heavy happens here
    assert engine.config.graft_model == "graft-tiny" and engine.config.allow_untrained
    assert engine.config.find.threshold == 0.2 and engine.config.find.refine == "none"
