"""Render the ImagePatch API (members marked ``@api``) to ``api_spec/image_patch_api.md``.

    python -m graft_vqa.planner.api_spec           # rewrite the file
    python -m graft_vqa.planner.api_spec --check   # exit 1 when the committed file is stale
"""
from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

from graft_vqa.api import api_members
from graft_vqa.core.resources import data_path
from graft_vqa.image_patch import ImagePatch

log = logging.getLogger(__name__)


HEADER = """# The ImagePatch API

Generated from `graft_vqa.image_patch.ImagePatch` by `python -m graft_vqa.planner.api_spec`; do not edit by hand.

Write `def execute_command(image_patch):` and return a bool, a number or a short string. `image_patch`
is the whole image. Only the members below exist. Coordinates are pixels: `left`/`right` are columns,
`lower`/`upper` are rows counted from the **bottom** of the image (so `upper > lower`). Areas are in
square metres and distances in metres, from the image's georeferencing.

When the question is asked about an area of interest (AOI), `image_patch` is the AOI's bounding
window and `image_patch.area_m2` is the AOI's area; `find` returns only the objects whose centroid
lies inside the AOI, and their areas (and `coverage_m2`) count only the part inside it. Programs need
nothing special for this: write them as for a whole image.

```python
def execute_command(image_patch):
    buildings = image_patch.find("building")
    large = [b for b in buildings if b.size == "large"]
    return len(large)
```
"""


def spec_path() -> Path:
    """Where the committed spec lives (``api_spec/image_patch_api.md``, shipped as package data)."""
    return data_path("api_spec") / "image_patch_api.md"


def _clean(annotation: str) -> str:
    return annotation.replace('"', "").replace("'", "")


def _signature(name: str, func: object) -> str:
    sig = inspect.signature(func)
    params = []
    for p in list(sig.parameters.values())[1:]:  # drop self
        text = p.name
        if p.annotation is not inspect.Parameter.empty:
            text += f": {_clean(str(p.annotation))}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {_clean(str(sig.return_annotation))}"
    return f"{name}({', '.join(params)}){ret}"


def render() -> str:
    """The Markdown text of the API spec, from the real class."""
    parts = [HEADER]
    for name, member in api_members(ImagePatch).items():
        if isinstance(member, property):
            func = member.fget
            ret = inspect.signature(func).return_annotation
            title = f"{name}: {_clean(str(ret))}  (property)"
        else:
            func = member
            title = _signature(name, func)
        doc = inspect.cleandoc(func.__doc__ or "").strip()
        parts.append(f"### `{title}`\n\n{doc}\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Write the spec, or with ``--check`` compare it and return 1 when stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file differs from the class")
    parser.add_argument("--output", type=Path, default=None, help="spec file (default: api_spec/image_patch_api.md)")
    args = parser.parse_args(argv)
    text = render()
    args.output = args.output or spec_path()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is stale: run `python -m graft_vqa.planner.api_spec`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
