"""The graft-vqa chat over an uploaded tile: ``python app.py --help``.

The app itself lives in :mod:`graft_vqa.ui`; this file only starts it.
"""
from __future__ import annotations

import sys

from graft_vqa.ui import main

if __name__ == "__main__":
    sys.exit(main())
