"""DDP with two CPU processes (gloo): training with the adversarial step's two backward passes,
rank-0-only files, and test metrics identical to a single-process test of the same checkpoint."""

import json
import math

import hydra
import lightning as L
import pytest
from conftest import ROOT, TINY_TRAIN, run_cli
from omegaconf import OmegaConf
from wandb_offline import find_run_files, summarize_run

from spine_lightning.training.module import SpineSegmentationModule

# One level and three test crops: an odd count that Lightning's default DistributedSampler would pad
# by repeating a crop (changing the L2 mean); the datamodule's unrepeated eval sampler must not.
DDP_DATA = ["data.subjects.num_val=2", "data.subjects.num_test=3", "data.levels=[L2]"]


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory):
    """Two jobs of a multirun, each DDP over two CPU processes: the second job must start its own
    ranks (not a new sweep, and not wait for the first job's)."""
    sweep = tmp_path_factory.mktemp("ddp") / "sweep"
    args = ["train.py", "-m", "+experiment=baseline,edge_adv", "trainer=ddp", "trainer.accelerator=cpu",
            "trainer.devices=2", *TINY_TRAIN, *DDP_DATA, "trainer.log_every_n_steps=1",
            f"hydra.sweep.dir={sweep}"]
    result = run_cli(args, cwd=ROOT, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # no nested sweeps
    for job in ("0", "1"):  # each job's second rank joined it (and logged into its folder)
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (sweep / job / "train.log").read_text()
    return sweep


@pytest.fixture(params=["0", "1"], ids=["baseline", "edge_adv"])
def ddp_run(ddp_sweep, request):
    return ddp_sweep / request.param


def single_process_test(run_dir):
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    datamodule = hydra.utils.instantiate(cfg.data)
    module = SpineSegmentationModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    return metrics, module.test_cases


def test_ddp_test_metrics_equal_single_process(ddp_run):
    ddp_metrics = json.loads((ddp_run / "metrics.json").read_text())
    # with max_epochs=1 the best checkpoint is the last one: the weights DDP tested
    single, cases = single_process_test(ddp_run)
    assert len(cases) == 3  # every test crop once
    for key in ("test/iou_L2", "test/dice_L2", "test/iou_mean"):
        assert math.isclose(ddp_metrics[key], single[key], rel_tol=0, abs_tol=1e-6), key
    mean_of_cases = sum(c["iou"] for c in cases) / len(cases)
    assert math.isclose(ddp_metrics["test/iou_L2"], mean_of_cases, abs_tol=1e-6)


def test_ddp_writes_once_and_gathers_cases_from_both_ranks(ddp_run):
    assert sorted(p.name for p in (ddp_run / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    runs = find_run_files(ddp_run)
    assert len(runs) == 1  # one W&B run: rank 0 only
    table_files = list(ddp_run.glob("wandb/offline-run-*/files/media/table/test/cases_*.table.json"))
    assert len(table_files) == 1
    rows = json.loads(table_files[0].read_text())["data"]
    assert sorted(r[0] for r in rows) == sorted(json.loads((ddp_run / "splits.json").read_text())["test"])
    history = summarize_run(runs[0])["history"]
    adversarial = ddp_run.name == "1"  # edge_adv: two backward passes per step under DDP
    assert any("train/loss_at" in row for row in history) == adversarial


def test_ddp_ranks_decide_together(tmp_path):
    """A non-finite loss on one rank skips the batch on every rank (no rank waits alone in the
    gradient all-reduce), and surface metrics are logged with the same keys on every rank."""
    result = run_cli([str(ROOT / "tests" / "ddp_rank_consistency.py"), str(tmp_path / "out")], cwd=ROOT,
                     timeout=120, env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"out.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["skipped"] for r in ranks] == [1, 1]
    for r in ranks:  # both ranks: rank 1's L3 distances; rank 0's empty L2 prediction has none
        assert {k: v for k, v in r["metrics"].items() if "assd" in k or "hd95" in k} == {
            "test/assd_L3": 1.5, "test/hd95_L3": 2.5, "test/assd_mean": 1.5, "test/hd95_mean": 2.5}
