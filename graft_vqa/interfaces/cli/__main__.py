"""``python -m graft_vqa.interfaces.cli``: the same as the ``graft-vqa`` command."""
import sys

from graft_vqa.interfaces.cli.main import main

sys.exit(main())
