"""Turn errors and failed answers into chat messages that say what happened and what to do."""
from __future__ import annotations

import logging

from graft_vqa.answer import Answer
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
    WeightsError,
    WeightsNotFoundError,
)

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = "a GeoTIFF (.tif/.tiff), PNG or JPEG"
_REPHRASE = ("Try one of the example questions (\"How many buildings are there?\", \"Is there a water area?\"), "
             "or choose the OpenAI-compatible planner in Settings for free-form questions.")
_PLANNER_ADVICE = ("Check the planner's base URL and model in Settings and that the server is running, "
                   "or switch the planner to \"rules\".")

# (error class, what to do) — first match wins, so subclasses come before their bases
_ADVICE: tuple[tuple[type[BaseException], str], ...] = (
    (TileNotFoundError, "The uploaded file is no longer on the server: upload the tile again."),
    (UnreadableTileError, f"Upload {SUPPORTED_FORMATS} file."),
    (UnsupportedTileError, "Crop or downsample the tile and upload it again."),
    (AreaUnavailableError, "This image has no georeferencing: set the ground sample distance (m/px) in "
                           "Settings, or upload a georeferenced GeoTIFF."),
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
    "not_understood": ("The question was not understood", _REPHRASE),
    "planner_error": ("The planner failed", _PLANNER_ADVICE),
    "refused": ("The generated program was refused by the sandbox",
                "Rephrase the question more simply, or use the rule planner."),
    "timeout": ("The program took too long", "Ask about fewer objects or upload a smaller tile."),
    "memory": ("The program used too much memory", "Upload a smaller tile or ask a simpler question."),
    "error": ("The program failed", "Rephrase the question; if it keeps failing, try the other planner."),
}


def advice_for(exc: BaseException) -> str:
    """What the user should do about ``exc`` (a generic hint for unknown errors)."""
    for cls, advice in _ADVICE:
        if isinstance(exc, cls):
            return advice
    if isinstance(exc, GraftVQAError):
        return "Check the tile and the settings, then try again."
    return "The server is still running: try again, and report the problem if it repeats."


def error_message(exc: BaseException, context: str = "") -> str:
    """A markdown chat message for an exception: what failed, why, and what to do.

    ``context`` names the action (``"Could not load the tile"``); unexpected (non-graft-vqa) errors
    are logged with their traceback and shown by type and message only.
    """
    if not isinstance(exc, GraftVQAError):
        log.exception("unexpected error in the app", exc_info=exc)
    what = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, GraftVQAError):
        what = f"{type(exc).__name__}: {what}"
    title = context or "Something went wrong"
    return f"**{title}.** {what}\n\n**What to do:** {advice_for(exc)}"


def answer_failure_message(answer: Answer) -> str:
    """A markdown chat message for an :class:`Answer` whose program could not be planned or run."""
    title, advice = _STATUS_ADVICE.get(answer.status, _STATUS_ADVICE["error"])
    detail = (answer.error or answer.status).strip()
    return f"**{title}** ({answer.status}). {detail}\n\n**What to do:** {advice}"
