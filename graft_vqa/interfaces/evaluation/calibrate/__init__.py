"""Calibrated thresholds per concept, learned from a labelled benchmark split (``graft-vqa calibrate``).

:mod:`.arguments` (command line), :mod:`.questions` (programs, concepts, tile split), :mod:`.maps`
(score maps once per tile and concept), :mod:`.space` (candidates), :mod:`.evaluate` (answers under
candidates, memoised), :mod:`.search` (global and per-concept choice), :mod:`.heldout` (before/after
with the real engine), :mod:`.report`, :mod:`.run` (the whole calibration). The file format is
:mod:`graft_vqa.thresholds`.
"""
