"""Evaluate graft-vqa on a benchmark: ``python eval/run_vqa.py --benchmark rsvqa --data-root DIR --out DIR``.

The same as ``graft-vqa eval``; the code lives in :mod:`graft_vqa.interfaces.evaluation` (installed
with the package), so this script needs no path tricks. ``--help`` lists every option.
"""
import sys

from graft_vqa.interfaces.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
