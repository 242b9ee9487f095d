"""The text queries a program will score, read from its source before it runs.

The engine scores them in one pass before the program starts (a scene is then read once for all its
queries, and the model's time is not charged to the program's sandbox limits). Only literal
arguments are found; anything else is scored when the program asks for it.
"""
from __future__ import annotations

import ast

FIND_METHODS = frozenset({"find", "exists", "count", "coverage_m2"})  # take the query as first argument


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def program_queries(source: str) -> list[str]:
    """The literal queries of ``find``-like calls and ``verify_property(name, property)`` (as
    ``"property name"``), in order of appearance, without repeats; [] for a program that does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        args = [_text(a) for a in node.args]
        if node.func.attr in FIND_METHODS and args and args[0]:
            found.append(args[0])
        elif node.func.attr == "verify_property" and len(args) == 2 and all(args):
            found.append(f"{args[1]} {args[0]}")
    return list(dict.fromkeys(found))
