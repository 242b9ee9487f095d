"""Drive the app's page: upload a tile, ask a question, wait for the answer."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TIMEOUT_MS = 30_000  # generous: the 2-core CI machine runs other tests beside these


def upload(page: Any, path: Path) -> None:
    """Put ``path`` into the tile upload box (the upload event starts by itself)."""
    page.locator("#tile-upload input[type=file]").set_input_files(str(path))


def wait_for_tile(page: Any, name: str) -> str:
    """Wait until the tile summary names ``name``; returns the summary text."""
    info = page.locator("#tile-info")
    info.get_by_text(name).wait_for(timeout=TIMEOUT_MS)
    return info.inner_text()


def ask(page: Any, question: str) -> None:
    """Type ``question`` and press Ask."""
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()


def overlay_image(page: Any, number: int) -> Any:
    """The overlay image of the session's ``number``-th answer (a Playwright locator), once it is shown."""
    image = page.locator(f'#chat img[src$="/overlay_{number}.png"]')
    image.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                           timeout=TIMEOUT_MS)
    return image


def bold_texts(page: Any) -> list[str]:
    """Texts of the bold runs in the chat (answers are shown in bold, first in their message)."""
    return [t.strip() for t in page.locator("#chat strong").all_inner_texts()]


def wait_for_text(page: Any, pattern: str) -> str:
    """Wait until the chat shows text matching the regex ``pattern``; returns the chat's text."""
    page.locator("#chat").get_by_text(re.compile(pattern)).first.wait_for(timeout=TIMEOUT_MS)
    return page.locator("#chat").inner_text()
