"""Calibrate find's thresholds per concept: ``python eval/calibrate.py --data-root DIR --split train --out thresholds.json``.

The same as ``graft-vqa calibrate``; the code lives in :mod:`graft_vqa.interfaces.evaluation.calibrate`
(installed with the package). ``--help`` lists every option.
"""
import sys

from graft_vqa.interfaces.evaluation.calibrate.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
