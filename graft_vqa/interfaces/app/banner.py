"""What the page says from load when the app's engine lacks weights, and whether SAM can be ticked.

Computed once when the app is built, from the engine settings it serves: which files are missing,
what that means for the answers (random weights, failing questions, no SAM) and the fix (which file
to put in which folder, then restart the app). Nothing is loaded or downloaded.
"""
from __future__ import annotations

from graft_vqa import weights
from graft_vqa.config import EngineConfig
from graft_vqa.models import missing_weights


def _fetch(name: str) -> str:
    spec = weights.source(name)
    origin = f"`graft-vqa weights pull {name}`" if spec.url else "from the GRAFT authors"
    return f"`{spec.filename}` ({origin})"


def weights_banner(config: EngineConfig | None) -> str:
    """Markdown for the top of the page when weights the app's engine needs are missing ("" when none is).

    Says what that means for the answers (random weights, failing questions, no SAM) and the fix:
    which file to put in which folder, then restart the app.
    """
    if config is None:
        return ""
    missing = missing_weights(config)
    folder = f"`{weights.search_folder()}/`"
    lines = []
    models = {role: name for role, name in missing.items() if role != "SAM"}
    if models:
        files = " and ".join(_fetch(name) for name in models.values())
        which = " and ".join(models)  # "GRAFT and CLIP"
        if config.allow_untrained:
            lines.append(f"⚠️ **No trained {which} weights: every answer comes from random weights and is NOT "
                         "meaningful** "
                         "(the app was started with `--allow-untrained`; answers carry an UNTRAINED badge). "
                         f"To get real answers, put {files} in {folder} and restart the app.")
        else:
            lines.append(f"⚠️ **No trained {which} weights: questions will fail.** Put {files} in {folder} and restart "
                         "the app, or restart it with `--allow-untrained` to try the interface with random weights "
                         "(answers are then not meaningful).")
    if "SAM" in missing:
        lines.append(f"SAM weights were not found: instances are the thresholded score maps, not refined by SAM. "
                     f"Put {_fetch(missing['SAM'])} in {folder} and restart the app to refine them.")
    return "\n\n".join(lines)


def sam_found(config: EngineConfig | None) -> bool | None:
    """Whether the SAM weights of ``config`` are found (None: no config, so unknown)."""
    if config is None:
        return None
    probe = config if config.find.refine == "sam" else EngineConfig.from_options(config, refine="sam")
    return "SAM" not in missing_weights(probe)
