"""Pulling a program out of an LLM reply, and checking it before it runs.

:func:`extract_program` accepts fenced (```python) or bare code, with or without the
``def execute_command(image_patch):`` line, and repairs a single function with the wrong name.
:func:`validate_program` checks the shape of the program statically; the sandbox does the rest.
"""
from __future__ import annotations

import ast
import re
import textwrap

from graft_vqa.core.errors import PlannerError, ProgramError
from graft_vqa.sandbox.policy import ALLOWED_IMPORTS
from graft_vqa.sandbox.wire import quote_line

ENTRY_POINT = "execute_command"

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF_ENTRY = re.compile(rf"^[ \t]*def[ \t]+{ENTRY_POINT}[ \t]*\(", re.MULTILINE)
_DEF_ANY = re.compile(r"^def[ \t]+(\w+)[ \t]*\(", re.MULTILINE)
_CODE_LANGS = {"", "python", "py", "python3"}
_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)  # reasoning models' scratch text


class UnusableReplyError(PlannerError):
    """The LLM replied, but the reply holds no usable program (no code, wrong function name).

    ``reply`` keeps the raw reply so the planner can feed it back when it re-asks.
    """

    def __init__(self, message: str, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply


def extract_program(reply_text: str) -> str:
    """Return the program source found in an LLM reply.

    Ignores ``<think>`` sections, picks the fenced block that defines ``execute_command`` (else
    the first code block), falls back to bare text, wraps a body without its ``def`` line
    (turning a final expression into a ``return``), and renames a lone function. Raises
    :class:`UnusableReplyError` when there is no code or the function cannot be identified.
    """
    text = _THINKING.sub("", (reply_text or "").replace("\r\n", "\n"))
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _CODE_LANGS]
    if not blocks:
        blocks = [_bare_code(text)]
    for block in blocks:
        if _DEF_ENTRY.search(block):
            return textwrap.dedent(block).strip() + "\n"
    for block in blocks:
        source = _repair(textwrap.dedent(block).strip(), text)
        if source is not None:
            return source
    raise UnusableReplyError(
        f"The reply contains no Python code defining {ENTRY_POINT}(image_patch). "
        "Ask the model again, or check that the prompt reaches it intact.", text)


def _bare_code(text: str) -> str:
    """Return the code part of an unfenced reply: all of it when it parses, else the def block."""
    stripped = textwrap.dedent(text).strip()
    try:
        ast.parse(stripped)
        return stripped
    except SyntaxError:
        pass
    match = _DEF_ENTRY.search(text) or re.search(r"^[ \t]*def[ \t]+\w+[ \t]*\(", text, re.MULTILINE)
    if match is None:
        return stripped
    lines = text[match.start():].split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip() and not line[:1].isspace():
            break
        kept.append(line)
    return "\n".join(kept)


def _repair(block: str, reply: str) -> str | None:
    """Rename a lone function to the entry point, or wrap a bare body; None when not code."""
    if not block:
        return None
    names = _DEF_ANY.findall(block)
    if len(names) == 1:
        return _DEF_ANY.sub(f"def {ENTRY_POINT}(", block, count=1) + "\n"
    if len(names) > 1:
        raise UnusableReplyError(
            f"The reply defines {len(names)} functions ({', '.join(names)}) but none is named "
            f"{ENTRY_POINT}; the program must define {ENTRY_POINT}(image_patch).", reply)
    return _wrap_body(block)


def _wrap_body(block: str) -> str | None:
    """Wrap statements that use ``image_patch`` into the entry point; None when not code."""
    try:
        tree = ast.parse(block)
    except SyntaxError:
        return None
    uses_patch = any(isinstance(node, ast.Name) and node.id == "image_patch" for node in ast.walk(tree))
    if not tree.body or not uses_patch:
        return None
    lines = block.split("\n")
    last = tree.body[-1]
    if isinstance(last, ast.Expr):
        start = last.lineno - 1
        line = lines[start]
        lines[start] = line[: last.col_offset] + "return " + line[last.col_offset:]
    body = textwrap.indent("\n".join(lines), "    ")
    return f"def {ENTRY_POINT}(image_patch):\n{body}\n"


def _fail(source: str, lineno: int | None, problem: str) -> ProgramError:
    """Build a ProgramError that quotes the failing line (as the sandbox quotes it)."""
    error = ProgramError(quote_line(source, lineno or None, problem))
    error.line = lineno  # type: ignore[attr-defined]
    return error


def validate_program(source: str) -> ast.Module:
    """Check a program statically and return its AST; raise :class:`ProgramError` quoting the line.

    The program must parse, define ``execute_command`` with one positional parameter at top
    level, import nothing but ``math``, and return a value.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise _fail(source, exc.lineno, f"syntax error: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # nested too deeply, NUL bytes
        raise _fail(source, None, f"the program could not be parsed ({type(exc).__name__}); "
                                  "write it with less deeply nested expressions") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad = [alias.name for alias in node.names if alias.name not in ALLOWED_IMPORTS]
        elif isinstance(node, ast.ImportFrom):
            bad = [] if node.module in ALLOWED_IMPORTS and not node.level else [node.module or "."]
        else:
            continue
        if bad:
            raise _fail(source, node.lineno, f"import of {', '.join(bad)} is not allowed (only math)")
    entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT]
    if not entry:
        raise _fail(source, None, f"the program must define `def {ENTRY_POINT}(image_patch):` at top level")
    func = entry[-1]
    args = func.args
    if len(args.posonlyargs) + len(args.args) != 1 or args.vararg or args.kwonlyargs or args.kwarg:
        raise _fail(source, func.lineno, f"{ENTRY_POINT} must take exactly one parameter, image_patch")
    if not _returns_value(func):
        raise _fail(source, func.lineno, f"{ENTRY_POINT} never returns a value; end it with `return ...`")
    return tree


def _returns_value(func: ast.FunctionDef) -> bool:
    """True when the function body (not nested functions) holds a ``return <value>``."""
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False
