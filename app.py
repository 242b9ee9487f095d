"""The graft-vqa chat over an uploaded tile: ``python app.py --help``.

The app itself lives in :mod:`graft_vqa.interfaces.app`; this file only starts it.
"""
from __future__ import annotations

import sys

from graft_vqa.interfaces.app import main

if __name__ == "__main__":
    sys.exit(main())
