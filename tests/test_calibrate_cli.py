"""graft-vqa calibrate on the real RSVQA-LR sample (random weights) and graft-vqa eval --thresholds with its file."""
from __future__ import annotations

import hashlib
import json

from graft_vqa.interfaces.app.session import UISettings, default_engine_factory
from graft_vqa.interfaces.cli import main as cli_main
from graft_vqa.thresholds import load_thresholds


def test_calibrate_the_lr_sample_then_evaluate_with_the_file(shared_data, tmp_path, capsys):
    root = shared_data / "rsvqa_lr_sample"
    out = tmp_path / "lr.json"
    common = ["--allow-untrained", "--graft-model", "graft-tiny", "--refine", "none", "--no-progress"]
    code = cli_main(["calibrate", "--data-root", str(root), "--split", "test", "--limit", "300", "--holdout", "0.34",
                     "--out", str(out), "--min-questions", "15", *common])
    summary = capsys.readouterr().out
    assert code == 0 and "held-out OA" in summary and str(out) in summary
    table = load_thresholds(out)
    assert table.weights_id == "graft-tiny[untrained(seed=0)]+clip-tiny[untrained(seed=0)]+template=raw"
    record = table.record
    assert record["benchmark"]["tiles"] == 3 and record["benchmark"]["heldout_tiles"] == 1
    assert {"before", "after"} <= set(record["heldout"]) and (record["concepts"] or record["uncalibrated"])
    assert all(c["questions"] >= 1 for c in [*record["concepts"].values(), *record["uncalibrated"].values()])
    report = json.loads((tmp_path / "lr_report" / "report.json").read_text())
    assert report["search"]["maps"]["tiles"] == 3 and report["search"]["maps"]["recomputed"] == 0
    assert report["heldout"]["agreement"]["same"] == report["heldout"]["agreement"]["checked"] > 0

    run = tmp_path / "run"
    code = cli_main(["eval", "--data-root", str(root), "--limit", "30", "--out", str(run), "--thresholds", str(out),
                     "--no-fsync", *common])
    assert code == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["system"]["thresholds"] == str(out)
    assert meta["system"]["thresholds_file"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["system"]["thresholds_file"]["weights_id"] == table.weights_id
    lines = (run / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 30


def test_the_app_passes_its_thresholds_file_to_the_engine(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                                "global": {"mode": "absolute", "value": 0.07}, "concepts": {}}))
    engine = default_engine_factory()(UISettings(thresholds=str(path), refine="none"))
    assert engine.config.find.thresholds == str(path) and engine.thresholds.global_threshold.value == 0.07
    assert default_engine_factory()(UISettings(refine="none")).thresholds is None
