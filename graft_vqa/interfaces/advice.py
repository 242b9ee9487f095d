"""Advice in the words of the interface the user is in.

The library writes its errors and warnings for the Python API: settings as ``name=value``
(``allow_untrained=True``, ``gsd_m=10.0``, ``graft_checkpoint=PATH``), the LLM planner as
``planner=OpenAIPlanner(...)`` and downloads as ``graft_vqa.weights.pull('NAME')``. The command line
and the app rewrite those to what their users can act on:

- :func:`for_cli`: ``--allow-untrained``, ``--gsd-m 10.0``, ``--planner openai``, ``graft-vqa weights pull NAME``;
- :func:`for_app`: the field in Settings (GSD, score threshold, SAM, planner), else how to restart the app.

Both drop a sentence that suggests a setting the user already chose (``config``), so nobody is told
to pass what they passed.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Callable

from graft_vqa.config import EngineConfig, FindConfig

_FIELDS = {f.name: f for cls in (EngineConfig, FindConfig) for f in dataclasses.fields(cls)
           if f.metadata.get("cli", False)}
_VALUE = r"(?:True|False|None|'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?|[A-Z][A-Z_]*)"
_SETTING = re.compile(r"\b(" + "|".join(sorted(_FIELDS, key=len, reverse=True)) + r")=(" + _VALUE + r")")
_PLANNER = "planner=OpenAIPlanner(...)"
_PULL = re.compile(r"graft_vqa\.weights\.pull\('([\w.-]+)'\)")
_CLI_NOTE = re.compile(r"\s*\(CLI: [^)]*\)")  # "(CLI: --trust-checkpoint)" notes of library messages
_SUGGESTS = re.compile(r"\b(?:pass|use|set|with|e\.g\.)\s", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.;:])\s+(?=[A-Z(])")

# settings the app's Settings panel holds: field -> how to point at it (value -> words)
_APP_FIELDS: dict[str, Callable[[str], str]] = {
    "gsd_m": lambda v: f"GSD (m/px) {v} in Settings",
    "threshold": lambda v: f"Score threshold {v} in Settings",
    "refine": lambda v: ('untick "Refine instances with SAM" in Settings' if v == "none"
                         else 'tick "Refine instances with SAM" in Settings'),
}


def _plain(value: str) -> str:
    """``'none'`` -> ``none``; numbers and placeholders stay as they are."""
    return value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] else value


def cli_option(name: str, value: str) -> str:
    """``allow_untrained``, ``True`` -> ``--allow-untrained``; ``gsd_m``, ``10.0`` -> ``--gsd-m 10.0``."""
    flag = "--" + name.replace("_", "-")
    if value == "True":
        return flag
    if value == "False":
        return "--no-" + name.replace("_", "-")
    return f"{flag} {_plain(value)}"


def _already_chosen(sentence: str, config: EngineConfig | None) -> bool:
    """True when ``sentence`` suggests a setting whose value ``config`` already has."""
    if config is None:
        return False
    settings = config.settings()
    for match in _SETTING.finditer(sentence):
        if not _SUGGESTS.search(sentence[: match.start()]):
            continue  # a description ("asked for (refine='sam')"), not a suggestion
        current, value = settings.get(match[1]), match[2]
        if current is not None and (repr(current) == value or str(current) == _plain(value)):
            return True
    return False


def _without_chosen(text: str, config: EngineConfig | None) -> str:
    """``text`` minus the sentences that suggest what ``config`` already says."""
    if config is None:
        return text
    lines = []
    for line in text.split("\n"):
        kept = [s for s in _SENTENCE.split(line) if not _already_chosen(s, config)]
        lines.append(" ".join(kept))
    return "\n".join(lines)


def for_cli(text: str, config: EngineConfig | None = None) -> str:
    """A library message as the command line's user needs it: flags, commands, no Python names."""
    text = _CLI_NOTE.sub("", _without_chosen(text, config))
    text = text.replace(_PLANNER, "--planner openai")
    text = _PULL.sub(lambda m: f"`graft-vqa weights pull {m[1]}`", text)
    return _SETTING.sub(lambda m: cli_option(m[1], m[2]), text)


def _app_setting(match: re.Match[str]) -> str:
    name, value = match[1], match[2]
    if name in _APP_FIELDS:
        return _APP_FIELDS[name](_plain(value))
    return f"restart the app with {cli_option(name, value)}"


def for_app(text: str, config: EngineConfig | None = None) -> str:
    """A library message as the app's user needs it: the field in Settings, or how to restart the app."""
    text = _CLI_NOTE.sub("", _without_chosen(text, config))
    text = text.replace(_PLANNER, 'the "openai" Planner in Settings')
    text = _PULL.sub(lambda m: f"`graft-vqa weights pull {m[1]}`", text)
    text = _SETTING.sub(_app_setting, text)
    text = re.sub(r"\b([Pp])ass (restart the app|untick|tick)", lambda m: m[2] if m[1] == "p" else m[2].capitalize(),
                  text)
    return re.sub(r"\b([Pp])ass (GSD|Score threshold)", lambda m: ("set " if m[1] == "p" else "Set ") + m[2], text)


class CliLogFilter(logging.Filter):
    """A logging filter that rewrites library messages for the command line (see :func:`for_cli`)."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        super().__init__()
        self.config = config

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        rewritten = for_cli(message, self.config)
        if rewritten != message:
            record.msg, record.args = rewritten, None
        return True


def install_cli_logging(config: EngineConfig | None = None, **basic: Any) -> None:
    """``logging.basicConfig(**basic)`` whose handlers say library messages in CLI words."""
    logging.basicConfig(**basic)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CliLogFilter) for f in handler.filters):
            handler.addFilter(CliLogFilter(config))
