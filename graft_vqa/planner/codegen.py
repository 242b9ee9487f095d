"""Writing readable programs from parsed questions, in the style an LLM would write them."""
from __future__ import annotations

import builtins
import keyword
import re

from graft_vqa.planner.grammar import NounPhrase

INDENT = "    "


class ProgramWriter:
    """Accumulates the body of ``execute_command`` and names the intermediate lists.

    Programs stay cheap in API calls: each noun is found once (``find`` lists are reused, also
    when a phrase relates a noun to itself), and a relation is one ``filter_related`` call per
    phrase instead of one relation call per pair of instances.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names: set[str] = {"image_patch", "patch", "other"}
        self._found: dict[str, str] = {}  # noun -> variable holding image_patch.find(noun)

    def _variable(self, noun: str, suffix: str = "s") -> str:
        """A fresh, readable variable name for a list of ``noun`` patches (``suffix`` "s")."""
        base = re.sub(r"[^a-z0-9]+", "_", noun.lower()).strip("_") + suffix
        if not base[0].isalpha() or keyword.iskeyword(base) or hasattr(builtins, base):
            base = f"found_{base}"
        name, index = base, 2
        while name in self._names:
            name, index = f"{base}_{index}", index + 1
        self._names.add(name)
        return name

    def find(self, noun: str) -> str:
        """The variable holding ``image_patch.find(noun)``, emitting the call the first time only."""
        if noun not in self._found:
            self._found[noun] = self._assign(noun, f"image_patch.find({_quote(noun)})")
        return self._found[noun]

    def patches(self, phrase: NounPhrase) -> str:
        """Return an expression for the list of patches matching ``phrase`` (emitting lines if needed)."""
        selected = self._with_attributes(phrase, self.find(phrase.noun))
        if phrase.relation is None or phrase.reference is None:
            return selected
        reference = self._with_attributes(phrase.reference, self.find(phrase.reference.noun))
        return self._assign(f"related {phrase.noun}", f"image_patch.filter_related({selected}, "
                                         f"{_quote(phrase.relation)}, {reference})")

    def _with_attributes(self, phrase: NounPhrase, found: str) -> str:
        """``found`` filtered by the phrase's size and shape (``found`` itself when it has none)."""
        conditions = attribute_conditions(phrase)
        if not conditions:
            return found
        described = " ".join(word for word in (phrase.size, phrase.shape, phrase.noun) if word)
        return self._assign(described, f"[patch for patch in {found} if {' and '.join(conditions)}]")

    def _assign(self, noun: str, expression: str, suffix: str = "s") -> str:
        """Emit ``name = expression`` and return the name."""
        name = self._variable(noun, suffix)
        self.lines.append(f"{INDENT}{name} = {expression}")
        return name

    def area(self, phrase: NounPhrase) -> str:
        """A variable holding the ground area (m²) covered by ``phrase``, e.g. ``forest_m2``."""
        if phrase.plain:
            expression = f"image_patch.coverage_m2({_quote(phrase.noun)})"
        else:
            expression = f"sum(patch.area_m2 for patch in {self.patches(phrase)})"
        described = " ".join(word for word in (phrase.size, phrase.shape, phrase.noun) if word)
        return self._assign(described, expression, suffix="_m2")

    def ret(self, expression: str) -> str:
        """Finish the program with ``return expression`` and return the full source."""
        self.lines.append(f"{INDENT}return {expression}")
        return "def execute_command(image_patch):\n" + "\n".join(self.lines) + "\n"


def attribute_conditions(phrase: NounPhrase) -> list[str]:
    """The size and shape tests of ``phrase`` on a variable named ``patch``."""
    conditions = []
    if phrase.size is not None:
        conditions.append(f"patch.size == {_quote(phrase.size)}")
    if phrase.shape is not None:
        conditions.append(f"patch.shape == {_quote(phrase.shape)}")
    return conditions


def _quote(text: str) -> str:
    """A double-quoted Python string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def presence_program(phrase: NounPhrase) -> str:
    """Program answering "is there a <phrase>?" with a bool."""
    writer = ProgramWriter()
    if phrase.plain:
        return writer.ret(f"image_patch.exists({_quote(phrase.noun)})")
    if phrase.relation is None:  # stops at the first match
        condition = " and ".join(attribute_conditions(phrase))
        return writer.ret(f"any({condition} for patch in image_patch.find({_quote(phrase.noun)}))")
    return writer.ret(f"len({writer.patches(phrase)}) > 0")


def count_program(phrase: NounPhrase) -> str:
    """Program answering "how many <phrase>?" with an int."""
    writer = ProgramWriter()
    if phrase.plain:
        return writer.ret(f"len(image_patch.find({_quote(phrase.noun)}))")
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


def share_program(phrase: NounPhrase) -> str:
    """Program answering "how much of the image is <phrase>?" as a percent of the image's area."""
    writer = ProgramWriter()
    covered = writer.area(phrase)
    return writer.ret(f'f"{{100 * {covered} / image_patch.area_m2:.1f}}%"')


def area_compare_program(first: NounPhrase, operator: str, second: NounPhrase) -> str:
    """Program comparing the areas (m²) two phrases cover with ``operator`` (">", "<")."""
    writer = ProgramWriter()
    left, right = writer.area(first), writer.area(second)
    return writer.ret(f"{left} {operator} {right}")


def choice_program(options: list[str]) -> str:
    """Program picking the option that best matches the whole image."""
    listed = ", ".join(_quote(option) for option in options)
    return ProgramWriter().ret(f"image_patch.best_text_match([{listed}])")
