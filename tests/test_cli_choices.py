"""Group-choice check of the entry points: plugin-provided hydra/* choices pass, typos fail."""

import pytest
from conftest import ROOT

from spine_lightning.core.cli import check_group_choices


def test_plugin_launchers_and_sweepers_are_hydras_to_check():
    # submitit_local and optuna live in the plugins, not in conf/hydra/launcher or conf/hydra/sweeper
    check_group_choices(["hydra/launcher=submitit_local", "hydra/sweeper=optuna", "hydra/launcher=slurm"],
                        ROOT / "conf")


def test_unknown_project_choice_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_group_choices(["+sweep=ablations"], ROOT / "conf")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: sweep=ablations: no such sweep; allowed: ablation"


def test_hydra_flags_and_their_values_are_not_overrides(tmp_path):
    """`--cfg job` and `-m` travel with the overrides; the check must pass over them and still catch
    a wrong group choice after them."""
    check_group_choices(["--cfg", "job", "-m", "model=cpu"], ROOT / "conf")
    with pytest.raises(SystemExit):
        check_group_choices(["--cfg", "job", "model=nope"], ROOT / "conf")
