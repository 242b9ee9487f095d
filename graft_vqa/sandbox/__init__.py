"""Run generated programs safely: RestrictedPython, a forked child of a small zygote, a typed channel.

``run(source, image_patch, ...) -> Execution`` is the whole public surface; ``capabilities()``
says which confinement layers this machine provides (seccomp, Landlock, an unprivileged user,
isolation from other processes' ``/proc``: a missing one is logged once and reported as False
with a reason). See ``policy``/``guards``/``formatting`` (layer 1), ``confine``/``seccomp``/``landlock``/
``zygote``/``child`` (layer 2) and ``wire``/``host``/``code_cache`` (layer 3).
"""
from __future__ import annotations

from .host import STATUSES, Execution, capabilities, run
from .process import Zygote, default_zygote


def shutdown() -> None:
    """Stop the process-wide zygote (a later ``run`` starts a new one)."""
    default_zygote().close()


__all__ = ["Execution", "STATUSES", "Zygote", "capabilities", "run", "shutdown"]
