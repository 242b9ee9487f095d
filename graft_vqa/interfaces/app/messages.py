"""Turn errors and failed answers into chat messages that say what happened and what to do.

Library messages name settings as the Python API does (``gsd_m=10.0``); here they are rewritten
for the app (:func:`graft_vqa.interfaces.advice.for_app`: the field in Settings, or how to restart
the app), and the server's temporary paths become the file names the user uploaded.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import Mapping

from graft_vqa.answer import Answer
from graft_vqa.config import EngineConfig
from graft_vqa.core.text import clean_text
from graft_vqa.core.errors import (
    AreaUnavailableError,
    CheckpointError,
    GraftVQAError,
    PlannerError,
    QuestionNotUnderstoodError,
    TileError,
    TileNotFoundError,
    UnreadableTileError,
    UnsupportedTileError,
    UploadTooLargeError,
    WeightsError,
    WeightsNotFoundError,
)
from graft_vqa.interfaces.advice import for_app

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = "a GeoTIFF (.tif/.tiff), PNG or JPEG"
_REPHRASE = "Ask it like one of the examples above."
_PLANNER_ADVICE = ("Check the planner's base URL and model in Settings and that the server is running, "
                   "or switch the planner to \"rules\".")
_GSD_ADVICE = ("Set \"GSD (m/px)\" in Settings to the image's ground sample distance (e.g. 10 for Sentinel-2, "
               "0.15 for aerial photos), then ask again; or upload a georeferenced GeoTIFF.")

# (error class, what to do) — first match wins, so subclasses come before their bases
_ADVICE: tuple[tuple[type[BaseException], str], ...] = (
    (TileNotFoundError, "The uploaded file is no longer on the server: upload the tile again."),
    (UnreadableTileError, f"Upload {SUPPORTED_FORMATS} file."),
    (UploadTooLargeError, "Rasters of any size are answered window by window, but this server takes uploads up to "
                          "the limit above: cut the area you need (e.g. gdal_translate -projwin), save it compressed "
                          "(gdal_translate -co COMPRESS=DEFLATE), or restart the app with a larger --max-upload-mb."),
    (UnsupportedTileError, "Crop or downsample the tile and upload it again."),
    (AreaUnavailableError, _GSD_ADVICE),
    (TileError, f"Upload {SUPPORTED_FORMATS} file."),
    (WeightsNotFoundError, "Put the weights file where the message says and restart the app, or start it with "
                           "--allow-untrained to try the interface with random weights (answers are meaningless)."),
    (CheckpointError, "Check that the checkpoint is the right model; if you trust the file, restart the app "
                      "with --trust-checkpoint."),
    (WeightsError, "Check the weights options the app was started with."),
    (QuestionNotUnderstoodError, _REPHRASE),
    (PlannerError, _PLANNER_ADVICE),
)

# failed Answer.status -> (title, what to do)
_STATUS_ADVICE: dict[str, tuple[str, str]] = {
    "not_understood": ("The question was not understood", ""),  # its two lines say what to ask instead
    "planner_error": ("The planner failed", _PLANNER_ADVICE),
    "refused": ("The generated program was refused by the sandbox",
                "Rephrase the question more simply, or use the rule planner."),
    "timeout": ("The program took too long", "Ask about fewer objects or upload a smaller tile."),
    "memory": ("The program used too much memory", "Upload a smaller tile or ask a simpler question."),
    "error": ("The program failed", "Rephrase the question; if it keeps failing, try the other planner."),
}


def hide_paths(text: str, names: Mapping[str, str] | None = None) -> str:
    """``text`` without the server's temporary paths: each of ``names`` (path -> what the user calls
    it) is replaced, and any other path under Gradio's upload folder becomes its file name."""
    for path, name in (names or {}).items():
        if path:
            text = text.replace(str(path), name)
    uploads = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    return re.sub(re.escape(uploads.rstrip("/")) + r"/(?:[^/\s'\"]+/)*", "", text)


def advice_for(exc: BaseException) -> str:
    """What the user should do about ``exc`` (a generic hint for unknown errors)."""
    for cls, advice in _ADVICE:
        if isinstance(exc, cls):
            return advice
    if isinstance(exc, GraftVQAError):
        return "Check the tile and the settings, then try again."
    return "The server is still running: try again, and report the problem if it repeats."


def error_message(exc: BaseException, context: str = "", names: Mapping[str, str] | None = None,
                  config: EngineConfig | None = None) -> str:
    """A markdown chat message for an exception: what failed, why, and what to do.

    ``context`` names the action (``"Could not load the tile"``); ``names`` maps server paths to the
    names the user knows; ``config`` is the engine's (advice never repeats a setting it already has).
    Unexpected (non-graft-vqa) errors are logged with their traceback and shown by type and message only.
    """
    if not isinstance(exc, GraftVQAError):
        log.exception("unexpected error in the app", exc_info=exc)
    what = clean_text(str(exc).strip(), keep_newlines=True) or type(exc).__name__
    if not isinstance(exc, GraftVQAError):
        what = f"{type(exc).__name__}: {what}"
    title = context or "Something went wrong"
    what, advice = hide_paths(for_app(what, config), names), advice_for(exc)
    if isinstance(exc, WeightsNotFoundError) and ("--allow-untrained" in what or (config and config.allow_untrained)):
        advice = "Put the weights file where the message says and restart the app."  # said once, or already on
    return f"**{title}.** {what}\n\n**What to do:** {advice}"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def escape_markdown(text: str) -> str:
    """``text`` shown as itself in markdown: a program's output cannot format the chat (a fake
    bold "refused", a link)."""
    return _MARKDOWN.sub(r"\\\1", text)


def answer_failure_message(answer: Answer, config: EngineConfig | None = None,
                           names: Mapping[str, str] | None = None) -> str:
    """A markdown chat message for an :class:`Answer` whose program could not be planned or run."""
    title, advice = _STATUS_ADVICE.get(answer.status, _STATUS_ADVICE["error"])
    detail = hide_paths(for_app((answer.error or answer.status).strip(), config), names)
    if AreaUnavailableError.__name__ in (answer.error or ""):  # a PNG or JPEG asked for an area
        title, advice = "Areas in m² need the image's scale", _GSD_ADVICE  # the GSD field, not "rephrase"
    if answer.status == "not_understood":
        return f"**{title}.** " + detail.replace("\n", "\n\n")
    fence = "`" * 3  # the error comes from a program or its model: shown verbatim, never as markdown
    detail = detail.replace(fence, "'" * 3)
    return (f"**{title}** ({escape_markdown(answer.status)}).\n{fence}text\n{detail}\n{fence}\n\n"
            f"**What to do:** {advice}")
