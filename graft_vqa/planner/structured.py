"""Structured output: ask the server for ``{"program": "<source>"}`` under a JSON schema, where it can.

Servers spell it differently: OpenAI, vLLM and recent Ollama take ``response_format={"type":
"json_schema", ...}``; ``llama_cpp.server`` takes ``{"type": "json_object", "schema": ...}`` and turns
the schema into a grammar. ``"auto"`` tries them in that order and settles on the first the server
accepts (a 400/422 reply means "not supported"), else plain text. Whatever comes back, the program
is read by :func:`program_text` (the JSON field when the reply is such an object, else the reply for
the usual code extraction), so a server that ignores the request still works.
"""
from __future__ import annotations

import json
from typing import Any, Literal

StructuredMode = Literal["off", "auto", "json_schema", "json_object"]
MODES: tuple[str, ...] = ("off", "auto", "json_schema", "json_object")
AUTO_ORDER: tuple[str, ...] = ("json_schema", "json_object")  # what "auto" tries, in order
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"program": {"type": "string", "description": "Python source defining execute_command"}},
    "required": ["program"],
    "additionalProperties": False,
}


def response_format(mode: str) -> dict[str, Any] | None:
    """The ``response_format`` request field for a concrete mode (None for "off")."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "program", "schema": SCHEMA, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object", "schema": SCHEMA}
    return None


def program_text(reply: str) -> str:
    """The program inside a JSON reply (``{"program": ...}``), else the reply unchanged."""
    text = (reply or "").strip()
    if text.startswith("```"):  # some models fence their JSON
        text = text.strip("`").removeprefix("json").strip()
    if not text.startswith("{"):
        return reply
    try:
        data = json.loads(text)
    except ValueError:
        return reply
    program = data.get("program") if isinstance(data, dict) else None
    return program if isinstance(program, str) and program.strip() else reply
