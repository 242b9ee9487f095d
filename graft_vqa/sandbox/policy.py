"""Layer 1 of the sandbox, compile time: RestrictedPython's policy with the graft-vqa refusals.

``compile_program`` parses a program once and compiles it with :class:`SandboxPolicy`: on top of
RestrictedPython's own rules (no name or attribute that starts with ``_``, no ``exec``/``eval``
calls, no ``nonlocal``, no async, no ``try*``):

* imports other than ``math`` are refused;
* ``yield`` and ``yield from`` are refused (generator *expressions* stay allowed: their objects
  expose no attribute to the program, so ``gi_frame`` and friends are unreachable);
* introspection builtins (``getattr``, ``vars``, ``globals``, ``compile``, ``open`` ...) are refused
  by name, so the attempt is reported as ``refused`` rather than a ``NameError``;
* augmented assignment to an item or an attribute (``counts[name] += 1``, ``self.n += 1``) is
  rewritten to a guarded read and a guarded write (``_write_``, ``_getitem_``/``_getattr_``,
  ``_inplacevar_``), each operand evaluated once, so the same guards apply as to ``x = x + 1``.

What the compiled code may do when it runs is decided by the guards (``guards.build_globals``).
This module imports only the standard library and RestrictedPython: the zygote loads it.
"""
from __future__ import annotations

import ast
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer, copy_locations

PROGRAM_FILENAME = "<program>"
"""The file name programs are compiled under; frames with it are the program's own."""

ALLOWED_IMPORTS = frozenset({"math"})
"""Modules a program may import."""

REFUSED_NAMES = frozenset({
    "exec", "eval", "compile", "globals", "locals", "vars", "dir", "getattr", "setattr",
    "delattr", "hasattr", "open", "breakpoint", "memoryview", "super", "help", "input",
})
"""Builtins whose mere use is refused at compile time."""


def _name(name: str, ctx: ast.expr_context) -> ast.Name:
    return ast.Name(id=name, ctx=ctx)


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func, ast.Load()), args=list(args), keywords=[])


def _located(node: ast.AST, like: ast.AST) -> ast.AST:
    """``node`` and every node under it placed at ``like``'s position (errors quote the right line)."""
    for sub in ast.walk(node):
        if "lineno" in sub._attributes:
            copy_locations(sub, like)
    return node


def _has_slice(key: ast.expr) -> bool:
    return isinstance(key, ast.Slice) or (isinstance(key, ast.Tuple)
                                          and any(isinstance(e, ast.Slice) for e in key.elts))


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus the graft-vqa refusals and rewrites of the module docstring."""

    _aug_count = 0  # numbers the temporaries of rewritten augmented assignments

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in REFUSED_NAMES:
            self.error(node, f'"{node.id}" is not available to programs.')
        return super().visit_Name(node)

    def visit_Import(self, node: ast.Import) -> Any:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self.error(node, f'import of "{alias.name}" is not allowed (only math).')
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if node.level or node.module not in ALLOWED_IMPORTS:
            self.error(node, f'import from "{node.module}" is not allowed (only math).')
        return super().visit_ImportFrom(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        """RestrictedPython's class (with ``metaclass=__metaclass__``), kept on its own line:
        the rebuilt node would otherwise claim line 1, and errors would quote the wrong line."""
        position = ast.ClassDef(lineno=node.lineno, col_offset=node.col_offset,
                                end_lineno=node.end_lineno, end_col_offset=node.end_col_offset)
        new = super().visit_ClassDef(node)
        if isinstance(new, ast.ClassDef):
            ast.copy_location(new, position)
            for keyword in new.keywords:
                ast.copy_location(keyword, position)
                ast.copy_location(keyword.value, position)
        return new

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """``obj[key] op= value`` and ``obj.attr op= value`` become, with ``obj`` and ``key``
        evaluated once (temporaries start with ``_``, so no program can name them)::

            _aug_o_N = _write_(obj); _aug_k_N = key
            _aug_o_N[_aug_k_N] = _inplacevar_("op=", _getitem_(_aug_o_N, _aug_k_N), value)

        (``_getattr_`` and an attribute store for attributes). Names stay RestrictedPython's."""
        target = node.target
        if not isinstance(target, (ast.Subscript, ast.Attribute)):
            return super().visit_AugAssign(node)
        if isinstance(target, ast.Subscript) and _has_slice(target.slice):
            self.error(node, "augmented assignment to a slice is not allowed; "
                             "write x[a:b] = x[a:b] + y instead.")
            return node
        if isinstance(target, ast.Attribute):  # RestrictedPython's checks of the attribute name
            self.visit(_located(ast.Attribute(value=ast.Constant(0), attr=target.attr, ctx=ast.Load()), node))
        self._aug_count += 1
        obj_name, key_name = f"_aug_o_{self._aug_count}", f"_aug_k_{self._aug_count}"
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        value = self.visit(node.value)
        stmts: list[ast.stmt] = [ast.Assign(targets=[_name(obj_name, ast.Store())],
                                            value=_call("_write_", self.visit(target.value)))]
        if isinstance(target, ast.Subscript):
            stmts.append(ast.Assign(targets=[_name(key_name, ast.Store())], value=self.visit(target.slice)))
            read = _call("_getitem_", _name(obj_name, ast.Load()), _name(key_name, ast.Load()))
            store: ast.expr = ast.Subscript(value=_name(obj_name, ast.Load()),
                                            slice=_name(key_name, ast.Load()), ctx=ast.Store())
        else:
            read = _call("_getattr_", _name(obj_name, ast.Load()), ast.Constant(target.attr))
            store = ast.Attribute(value=_name(obj_name, ast.Load()), attr=target.attr, ctx=ast.Store())
        stmts.append(ast.Assign(targets=[store], value=_call("_inplacevar_", op, read, value)))
        return [_located(stmt, node) for stmt in stmts]

    def visit_Yield(self, node: ast.Yield) -> Any:
        self.error(node, "yield is not allowed; build and return a list instead.")
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> Any:
        self.error(node, "yield from is not allowed; build and return a list instead.")
        return node


def compile_program(source: str) -> tuple[Any | None, str | None, int | None, bool]:
    """Compile ``source`` restricted; return ``(code, message, line, refused)``.

    ``code`` is None on failure; ``refused`` tells a policy refusal from a plain syntax error.
    """
    try:
        tree = ast.parse(source, PROGRAM_FILENAME)  # parsed once: RestrictedPython takes the tree
    except SyntaxError as exc:
        return None, f"SyntaxError: {exc.msg}", exc.lineno, False
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, f"the program could not be parsed: {type(exc).__name__}", None, False
    try:
        result = compile_restricted_exec(tree, PROGRAM_FILENAME, policy=SandboxPolicy)
    except (RecursionError, MemoryError) as exc:  # parses, but too deep for the policy's walk
        return None, f"the program could not be compiled: {type(exc).__name__} (nested too deeply)", None, False
    if result.code is not None and not result.errors:
        return result.code, None, None, False
    first = result.errors[0] if result.errors else "refused by the sandbox policy"
    line = None
    if first.startswith("Line "):
        head, _, rest = first.partition(":")
        try:
            line = int(head[5:])
            first = rest.strip()
        except ValueError:
            pass
    return None, f"refused: {first}", line, True
