"""End to end, as a user runs it: `train.py data=verse|totalseg|folder` on trees built from the real
CT, `preprocess.py` filling the cache, and bad input as one line without a traceback."""

import json

from conftest import ROOT, TINY_MODEL, run_cli
from real_ct_trees import CT, LABEL, real_manifest, write_manifest, write_totalseg_tree, write_verse_tree

# The tiny network and 3 mm crops of the phantom smoke run, on real-CT trees.
TINY_FILES = [*TINY_MODEL, "logger=csv"]
LEVEL_KEYS = [f"test/iou_L{i}" for i in range(2, 6)]


def _train(tmp_path, data_args):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    result = run_cli([str(ROOT / "train.py"), *data_args, cache, *TINY_FILES], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    splits = json.loads((run / "splits.json").read_text())
    return metrics, splits


def _check(metrics, splits, n=3):
    assert all(0.0 <= metrics[k] <= 1.0 for k in LEVEL_KEYS), metrics
    members = [s for part in ("train", "val", "test") for s in splits[part]]
    assert len(members) == len(set(members)) == n and all(splits[p] for p in ("train", "val", "test"))


def test_train_on_a_verse_tree_oblique_2mm(tmp_path):
    root = write_verse_tree(tmp_path / "verse")
    metrics, splits = _train(tmp_path, ["data=verse", f"data.root={root}"])
    _check(metrics, splits)
    assert any(p.name == "meta.json" for p in (tmp_path / "cache").rglob("*"))  # trained from the cache


def test_train_on_a_totalsegmentator_tree(tmp_path):
    root = write_totalseg_tree(tmp_path / "ts")
    _check(*_train(tmp_path, ["data=totalseg", f"data.root={root}"]))


def test_train_on_a_manifest_with_a_label_map(tmp_path):
    manifest = real_manifest(tmp_path)
    _check(*_train(tmp_path, ["data=folder", f"data.manifest={manifest}", "data.label_map=totalseg"]))


def test_preprocess_fills_the_cache_once(tmp_path):
    manifest = real_manifest(tmp_path)
    args = [str(ROOT / "preprocess.py"), "data=folder", f"data.manifest={manifest}",
            "data.label_map=totalseg", f"paths.cache_dir={tmp_path / 'cache'}", "data.spacing=3.0",
            "data.crop_size=[32,48,32]"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "4 cache entries written, 8 reused" in first.stdout + first.stderr  # 3 copies share one content
    assert len(list((tmp_path / "cache").glob("*/*/hu.npy"))) == 4


def test_bad_input_is_one_line_naming_the_file_and_leaves_no_partial_cache(tmp_path):
    raw = CT.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 3])
    rows = [("a", str(CT), str(LABEL)), ("b", "cut.nii.gz", str(LABEL)), ("c", str(CT), str(LABEL))]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    result = run_cli([str(ROOT / "preprocess.py"), "data=folder", f"data.manifest={manifest}",
                      "data.label_map=totalseg", f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = (f"error: {tmp_path / 'cut.nii.gz'}: corrupt gzip "
                "(Compressed file ended before the end-of-stream marker was reached)")
    assert errors == [expected], result.stderr[-2000:]
    assert list((tmp_path / "cache").rglob("*.tmp")) == []  # nothing half-written
