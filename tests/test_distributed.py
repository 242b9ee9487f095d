"""graft-vqa on a real two-node Ray cluster on 127.0.0.1 (``ray start --head`` and ``ray start --address``,
one CPU each; tests/fixtures/ray_cluster.py): the same records, answers and search index as one
process, work on both nodes, a killed worker survived, a killed driver (evaluation, indexing) resumed,
nothing listening beyond 127.0.0.1 and no process left behind. Every Ray driver is a subprocess with the cluster's environment."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from graft_vqa import Engine
from graft_vqa.interfaces.cli.main import main as cli_main
from graft_vqa.interfaces.evaluation.report import TIMING_FIELDS
from graft_vqa.interfaces.evaluation.run import main as eval_main

from .fixtures.ray_cluster import RayCluster, processes, remove, start_cluster

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "rsvqa_lr_sample"
ENGINE = ["--planner", "rules", "--graft-model", "graft-tiny", "--allow-untrained", "--refine", "none"]
EXECUTION = ("timings", "worker")  # where and how long: the only fields that differ between runs


@pytest.fixture(scope="module")
def cluster():
    cluster = start_cluster(RSVQA_FAKE_DELAY_S="0.02")  # the scripted answerer's pace on the workers
    try:
        assert cluster.listening() == {"127.0.0.1"}
        yield cluster
        assert cluster.listening() <= {"127.0.0.1"}
    finally:
        left = cluster.stop()
        remove(cluster)
    assert not left, f"Ray processes left behind: {sorted(left)}"


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def _by_qid(records: list[dict]) -> list[dict]:
    """Records sorted by question id, without where and how long they took."""
    return [{k: v for k, v in r.items() if k not in EXECUTION} for r in sorted(records, key=lambda r: r["qid"])]


def _report(out: Path) -> dict:
    rep = json.loads((out / "report.json").read_text())
    return {k: v for k, v in rep.items() if k not in TIMING_FIELDS}


def _eval(cluster: RayCluster, *args: str, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "eval" / "run_vqa.py"), "--data-root", str(SAMPLE), "--no-progress", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=cluster.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout_s: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= n:
            return [json.loads(line) for line in path.read_text().splitlines()[:n]]
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines: {proc.poll()} {proc.stderr.read()[-2000:]}")


def test_300_questions_on_two_nodes_equal_one_process_and_survive_a_killed_worker(cluster, tmp_path):
    common = ["--limit", "300", *ENGINE]
    assert eval_main([*common, "--data-root", str(SAMPLE), "--no-progress", "--out", str(tmp_path / "one")]) == 0
    out = tmp_path / "ray"
    proc = _eval(cluster, *common, "--ray", cluster.address, "--workers", "2", "--out", str(out))
    first = _wait_lines(out / "predictions.jsonl", 1, proc)[0]["worker"]  # its worker answers the next image now
    os.kill(first["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    records = _records(out)
    assert _by_qid(records) == _by_qid(_records(tmp_path / "one"))  # the same answers, each question once
    assert _report(out) == _report(tmp_path / "one")
    workers = {(r["worker"]["node"], r["worker"]["pid"]) for r in records}
    assert len({node for node, _ in workers}) == 2  # work done on both nodes
    assert len(workers) == 3 and first["pid"] in {pid for _, pid in workers}  # the killed worker was restarted
    rep = json.loads((out / "report.json").read_text())["throughput"]
    assert len(rep["per_node"]) == 2 and sum(n["questions"] for n in rep["per_node"].values()) == 300
    assert rep["execution"]["mode"] == "ray" and rep["execution"]["nodes"] == 2 and rep["execution"]["workers"] == 2


def test_a_killed_driver_resumes_with_nothing_lost(cluster, tmp_path):
    common = ["--limit", "600", "--answerer", "tests.fixtures.rsvqa_fake:make_answerer"]
    assert eval_main([*common, "--data-root", str(SAMPLE), "--no-progress", "--out", str(tmp_path / "one")]) == 0
    out = tmp_path / "ray"
    proc = _eval(cluster, *common, "--ray", cluster.address, "--out", str(out))
    written = _wait_lines(out / "predictions.jsonl", 100, proc)
    proc.kill()
    proc.communicate(timeout=60)
    before = _records(out)
    assert 100 <= len(before) < 600 and not (out / "report.json").exists()
    resumed = _eval(cluster, *common, "--ray", cluster.address, "--out", str(out), "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    records = _records(out)
    assert records[:len(before)] == before and records[:100] == written  # nothing written was lost or rewritten
    assert _by_qid(records) == _by_qid(_records(tmp_path / "one"))
    assert _report(out) == _report(tmp_path / "one")


def _scene(path: Path, side: int = 1024) -> Path:
    """A georeferenced mosaic of the RSVQA-LR sample's images (real Sentinel-2 texture); ``side`` a multiple of 256."""
    profile = dict(driver="GTiff", height=side, width=side, count=3, dtype="uint8", crs="EPSG:32617",
                   transform=Affine(10.0, 0, 400000.0, 0, -10.0, 3300000.0), tiled=True, blockxsize=256,
                   blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        for k, (row, col) in enumerate((r, c) for r in range(0, side, 256) for c in range(0, side, 256)):
            with rasterio.open(SAMPLE / "Images_LR" / f"{k % 50}.tif") as src:
                dst.write(np.asarray(src.read([1, 2, 3]))[:, :256, :256], window=Window(col, row, 256, 256))
    return path


def test_a_scene_question_on_two_nodes_equals_one_process(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_WEIGHTS", cluster.env()["GRAFT_VQA_WEIGHTS"])  # the same warnings' text
    scene, question = str(_scene(tmp_path / "scene.tif")), "How many buildings are there?"
    options = {"graft_model": "graft-tiny", "allow_untrained": True, "refine": "none", "threshold_mode": "relative",
               "scene_pixels": 500_000, "scene_window": 512}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "ray_scene.py"), cluster.address, scene,
                           question, json.dumps(options)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=cluster.env(GRAFT_VQA_HOME=str(tmp_path / "driver")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ray = json.loads(proc.stdout)
    for cache in (True, False):
        one = Engine(**options, feature_cache=cache).ask(scene, question).model_dump(mode="json")
        on_ray = ray["answers"][f"feature_cache={cache}"]
        one.pop("timings"), on_ray.pop("timings")
        assert on_ray == one and len(one["detections"]) > 10, cache
    by_node = ray["windows_by_node"]
    assert len(by_node) == 2 and sum(by_node.values()) == 2 * 9  # 9 windows per pass, on both nodes


def test_a_tile_collection_on_two_nodes_equals_one_process(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_WEIGHTS", cluster.env()["GRAFT_VQA_WEIGHTS"])  # the same warnings' text
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for k in range(6):
        shutil.copy(SAMPLE / "Images_LR" / f"{k}.tif", tiles / f"{k}.tif")
    ask = ["ask", str(tiles / "*.tif"), "How many buildings are there?", "--json", "--gsd-m", "10", *ENGINE]
    assert cli_main(ask) == 0
    one = json.loads(capsys.readouterr().out)
    proc = subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", "-v", *ask, "--ray", cluster.address,
                           "--workers", "2"], cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ray = json.loads(proc.stdout)
    for rows in (one["tiles"], ray["tiles"]):
        for row in rows:
            row.pop("seconds")
    assert ray == one and one["total"]["answered"] == 6  # the same rows, in the same order, and the same total
    per_worker = proc.stderr.split("tiles per worker: ", 1)[1].splitlines()[0]
    assert len({item.split("/")[0] for item in per_worker.split(", ")}) == 2  # tiles answered on both nodes


def test_ask_with_ray_starts_no_ray_for_a_small_tile_and_refuses_a_swallowed_path(tmp_path, capsys):
    tile = str(REPO / "examples" / "rgbn_5m_utm18n.tif")
    assert cli_main(["ask", tile, "Is there a water area?", *ENGINE, "--ray", "127.0.0.1:1"]) == 0  # no cluster there
    assert capsys.readouterr().out.strip().split()[0] in ("yes", "no")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["ask", "--ray", tile, "Is there a water area?", *ENGINE])
    assert exit_.value.code == 2 and "write --ray last" in capsys.readouterr().err
    assert cli_main(["ask", tile, "Is there a water area?", *ENGINE, "--workers", "2"]) == 2
    assert "--workers and --worker-cpus need --ray" in capsys.readouterr().err


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_default_path_never_imports_ray(tmp_path):
    tile = REPO / "examples" / "rgbn_5m_utm18n.tif"
    proc = _python(f"""
import sys
from graft_vqa.interfaces.cli.main import main
from graft_vqa.interfaces.evaluation.run import main as eval_main
assert main(["ask", {str(tile)!r}, "Is there a water area?", *{ENGINE!r}]) == 0
assert eval_main(["--data-root", {str(SAMPLE)!r}, "--limit", "30", "--out", {str(tmp_path / "o")!r}, "--no-progress",
                  "--answerer", "tests.fixtures.rsvqa_fake:make_answerer"]) == 0
assert "ray" not in sys.modules, "the default path imported ray"
""")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_without_ray_installed_ray_options_say_how_to_install_it(tmp_path):
    tile = REPO / "examples" / "rgbn_5m_utm18n.tif"
    proc = _python(f"""
import sys
sys.modules["ray"] = None  # as if the extra were not installed
from graft_vqa.interfaces.cli.main import main
sys.exit(main(["ask", {str(tile)!r}, "Is there a water area?", "--ray"]))
""")
    assert proc.returncode == 2 and "pip install 'graft-vqa[distributed]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ray_without_an_address_starts_a_local_ray_that_ends_with_the_run(tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="gvl", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"), "RAY_TMPDIR": str(ray_tmp)}
    env = {k: v for k, v in env.items() if not k.startswith(("RAY_AUTH", "RAY_ENABLE_WINDOWS"))}
    out = tmp_path / "o"
    try:
        proc = subprocess.run([sys.executable, str(REPO / "eval" / "run_vqa.py"), "--data-root", str(SAMPLE),
                               "--limit", "200", "--answerer", "tests.fixtures.rsvqa_fake:make_answerer",
                               "--out", str(out), "--no-progress", "--ray", "--workers", "2"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        records = _records(out)
        assert len(records) == 200 and len({r["worker"]["pid"] for r in records}) == 2
        assert {r["worker"]["node"] for r in records} != {"local"}
        execution = json.loads((out / "report.json").read_text())["throughput"]["execution"]
        assert execution["started_here"] and execution["address"] == "local" and execution["workers"] == 2
        assert not (tmp_path / "home" / ".ray").exists()  # its token stayed in the environment
        time.sleep(2)
        left = [pid for pid, (_, cmd) in processes().items() if str(ray_tmp) in cmd]
        assert not left, f"the local Ray outlived its run: {left}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _chips(index: Path) -> tuple[list[tuple], np.ndarray]:
    """An index's chips sorted by file name and window: their metadata (the footprint's WKB included) and
    their vectors."""
    from graft_vqa.retrieval.store import ChipStore

    table = ChipStore.open(index)._chips.to_arrow().to_pylist()
    for row in table:
        row["path"] = Path(row["path"]).name
        row["meta"] = {**json.loads(row["meta"]), "path": row["path"]}
    table.sort(key=lambda r: (r["path"], r["row_off"], r["col_off"]))
    return [tuple((k, v) for k, v in r.items() if k != "vector") for r in table], np.array([r["vector"] for r in table])


def test_indexing_on_two_nodes_equals_one_process(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_WEIGHTS", cluster.env()["GRAFT_VQA_WEIGHTS"])  # the same (untrained) model id
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for k in range(4):
        shutil.copy(SAMPLE / "Images_LR" / f"{k}.tif", tiles / f"{k}.tif")
    _scene(tiles / "scene.tif", side=768)  # 16 chips of 224 px: two units of 8 on the workers
    index = ["--graft-model", "graft-tiny", "--allow-untrained", "--batch-size", "2", "--quiet"]
    assert cli_main(["index", str(tiles), "--out", str(tmp_path / "one"), *index]) == 0
    proc = subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", "-v", "index", str(tiles), "--out",
                           str(tmp_path / "ray"), *index, "--ray", cluster.address, "--workers", "2"],
                          cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "20 chips added from 5 new" in proc.stdout
    rows, vectors = _chips(tmp_path / "ray")
    one_rows, one_vectors = _chips(tmp_path / "one")
    assert rows == one_rows and len(rows) == 20  # the same chips, windows, footprints, files
    assert np.allclose(vectors, one_vectors, atol=1e-5)
    assert json.loads((tmp_path / "ray" / "index.json").read_text())["model_id"] == "graft-tiny:untrained-seed0"
    per_worker = proc.stderr.split("chips per worker: ", 1)[1].splitlines()[0]
    assert len({item.split("/")[0] for item in per_worker.split(", ")}) == 2  # chips embedded on both nodes


def test_a_killed_indexing_on_ray_resumes_to_the_same_index(cluster, tmp_path):
    from graft_vqa.retrieval import build_index
    from graft_vqa.retrieval.store import ChipStore

    from .embedders import ColourEmbedder, write_raster

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # three 192 x 192 rasters of nine 64-px chips each: units of 8 and 1 chips
        rgb = np.repeat(np.repeat(rng.integers(1, 255, (3, 3, 3), dtype=np.uint8), 64, 0), 64, 1)
        write_raster(tiles / f"t{i}.tif", rgb, origin=(500_000.0 + 5000 * i, 4_500_000.0))
    driver = [sys.executable, str(REPO / "tests" / "fixtures" / "ray_index.py"), cluster.address, str(tiles),
              str(tmp_path / "idx")]
    killed = subprocess.run([*driver, "1"], cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]  # killed once the first file was committed
    store = ChipStore.open(tmp_path / "idx")
    before, files_before = store.count(), len(store.indexed_files())
    assert 9 <= before < 27 and 1 <= files_before < 3
    resumed = subprocess.run(driver, cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["chips_added"] == 27 - before and report["unchanged"] == files_before  # only what was missing
    build_index(tiles, tmp_path / "one", embedder=ColourEmbedder(), chip=64, batch_size=2)
    rows, vectors = _chips(tmp_path / "idx")
    one_rows, one_vectors = _chips(tmp_path / "one")
    assert rows == one_rows and len(rows) == 27
    assert np.allclose(vectors, one_vectors, atol=1e-6)


def test_index_with_a_bad_ray_address_is_a_one_line_error(tmp_path, capsys):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    shutil.copy(SAMPLE / "Images_LR" / "0.tif", tiles / "0.tif")
    started = time.monotonic()
    code = cli_main(["index", str(tiles), "--out", str(tmp_path / "idx"), "--quiet", "--graft-model", "graft-tiny",
                     "--allow-untrained", "--ray", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("graft-vqa: error: no Ray cluster at 127.0.0.1:1") and "ray start --head" in err
    assert time.monotonic() - started < 60  # not Ray's minutes of retries
    assert not (tmp_path / "idx").exists()  # nothing written
    assert cli_main(["index", str(tiles), "--out", str(tmp_path / "idx"), "--workers", "2"]) == 2
    assert "--workers and --worker-cpus need --ray" in capsys.readouterr().err
