"""Benchmark evaluation: RSVQA loaders (:mod:`.rsvqa`), metrics (:mod:`.metrics`), the run loop
(:mod:`.runner`), reports (:mod:`.report`) and the command line (:mod:`.run`, also ``eval/run_vqa.py``)."""
