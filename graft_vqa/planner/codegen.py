"""Writing readable programs from parsed questions, in the style an LLM would write them."""
from __future__ import annotations

import builtins
import keyword
import re

from graft_vqa.planner.grammar import NounPhrase

INDENT = "    "


class ProgramWriter:
    """Accumulates the body of ``execute_command`` and names the intermediate lists."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names: set[str] = {"image_patch", "patch", "other"}

    def _variable(self, noun: str) -> str:
        """A fresh, readable variable name for a list of ``noun`` patches."""
        base = re.sub(r"[^a-z0-9]+", "_", noun.lower()).strip("_") + "s"
        if not base[0].isalpha() or keyword.iskeyword(base) or hasattr(builtins, base):
            base = f"found_{base}"
        name, index = base, 2
        while name in self._names:
            name, index = f"{base}_{index}", index + 1
        self._names.add(name)
        return name

    def patches(self, phrase: NounPhrase) -> str:
        """Return an expression for the list of patches matching ``phrase`` (emitting lines if needed)."""
        found = f"image_patch.find({_quote(phrase.noun)})"
        if phrase.plain:
            return found
        conditions = []
        if phrase.size is not None:
            conditions.append(f"patch.size == {_quote(phrase.size)}")
        if phrase.shape is not None:
            conditions.append(f"patch.shape == {_quote(phrase.shape)}")
        if phrase.relation is not None and phrase.reference is not None:
            reference = self.patches(phrase.reference)
            if phrase.reference.plain:
                reference = self._assign(phrase.reference.noun, reference)
            distinct = ""
            if phrase.reference.noun == phrase.noun:  # "buildings next to a building": not itself
                distinct = f" if {_box('other')} != {_box('patch')}"
            conditions.append(f"any(patch.{phrase.relation}(other) for other in {reference}{distinct})")
        return self._assign(phrase.noun, f"[patch for patch in {found} if {' and '.join(conditions)}]")

    def _assign(self, noun: str, expression: str) -> str:
        """Emit ``name = expression`` and return the name."""
        name = self._variable(noun)
        self.lines.append(f"{INDENT}{name} = {expression}")
        return name

    def ret(self, expression: str) -> str:
        """Finish the program with ``return expression`` and return the full source."""
        self.lines.append(f"{INDENT}return {expression}")
        return "def execute_command(image_patch):\n" + "\n".join(self.lines) + "\n"


def _box(name: str) -> str:
    """The box tuple of a patch variable, to tell two instances apart."""
    return f"({name}.left, {name}.lower, {name}.right, {name}.upper)"


def _quote(text: str) -> str:
    """A double-quoted Python string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def presence_program(phrase: NounPhrase) -> str:
    """Program answering "is there a <phrase>?" with a bool."""
    writer = ProgramWriter()
    if phrase.plain:
        return writer.ret(f"image_patch.exists({_quote(phrase.noun)})")
    return writer.ret(f"len({writer.patches(phrase)}) > 0")


def count_program(phrase: NounPhrase) -> str:
    """Program answering "how many <phrase>?" with an int."""
    writer = ProgramWriter()
    return writer.ret(f"len({writer.patches(phrase)})")


def compare_program(first: NounPhrase, operator: str, second: NounPhrase) -> str:
    """Program comparing the counts of two phrases with ``operator`` (">", "<", "==")."""
    writer = ProgramWriter()
    left = writer.patches(first)
    right = writer.patches(second)
    return writer.ret(f"len({left}) {operator} len({right})")


def area_program(phrase: NounPhrase) -> str:
    """Program answering "what area do <phrase> cover?" in m²."""
    writer = ProgramWriter()
    if phrase.plain:
        return writer.ret(f"image_patch.coverage_m2({_quote(phrase.noun)})")
    return writer.ret(f"sum(patch.area_m2 for patch in {writer.patches(phrase)})")


def choice_program(options: list[str]) -> str:
    """Program picking the option that best matches the whole image."""
    listed = ", ".join(_quote(option) for option in options)
    return ProgramWriter().ret(f"image_patch.best_text_match([{listed}])")
