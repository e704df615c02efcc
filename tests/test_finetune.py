"""`init_weights=`: a run starts from another checkpoint's network weights (fine-tuning)."""

import json

from conftest import ROOT, TINY_TRAIN, run_cli


def _untrained_run(tmp_path, name, *extra):
    run_dir = tmp_path / name
    result = run_cli(["train.py", *TINY_TRAIN, "logger=csv", "+trainer.limit_train_batches=0",
                      f"hydra.run.dir={run_dir}", *extra], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_init_weights_starts_from_the_checkpoints_network(tiny_checkpoint, tmp_path):
    trained = json.loads((tiny_checkpoint.parent.parent / "metrics.json").read_text())
    # no training batch: the test scores the starting weights
    started = _untrained_run(tmp_path, "from_ckpt", f"init_weights={tiny_checkpoint}")
    fresh = _untrained_run(tmp_path, "fresh")
    assert started["test/iou_mean"] == trained["test/iou_mean"]
    assert fresh["test/iou_mean"] != trained["test/iou_mean"]


def test_init_weights_is_refused_with_a_resume_or_another_network(tiny_checkpoint, tmp_path):
    both = run_cli(["train.py", *TINY_TRAIN, f"init_weights={tiny_checkpoint}", f"ckpt_path={tiny_checkpoint}",
                    f"hydra.run.dir={tmp_path / 'a'}"], cwd=ROOT)
    assert both.returncode == 2 and "init_weights" in both.stderr.strip().splitlines()[-1]
    other = run_cli(["train.py", *TINY_TRAIN, "init_weights=bundled", f"hydra.run.dir={tmp_path / 'b'}"], cwd=ROOT)
    last = other.stderr.strip().splitlines()[-1]
    assert other.returncode != 0 and "spine_lumbar.ckpt" in last and "differs from the model config" in last
    assert not (tmp_path / "b" / "checkpoints").exists()
