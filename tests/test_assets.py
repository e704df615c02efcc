"""The real CTs shipped as package data: found from the package, documented, loadable as subjects."""

import re
from pathlib import Path

import pytest

from spine_lightning.core.errors import ConfigError
from spine_lightning.data.assets import ASSETS, asset_path
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.sources import ASSET_SUBJECTS, asset_subjects


def test_the_asset_folder_is_inside_the_installed_package():
    import spine_lightning.data

    assert ASSETS == Path(spine_lightning.data.__file__).resolve().parent / "assets"
    for ct, label, _ in ASSET_SUBJECTS.values():
        assert asset_path(ct).is_file() and asset_path(label).is_file()


def test_the_readme_names_every_shipped_file_and_a_licence_for_each_folder():
    readme = (ASSETS / "README.md").read_text()
    shipped = [p for p in ASSETS.rglob("*") if p.is_file() and p.suffix in (".gz", ".json")]
    assert shipped
    for path in shipped:
        assert f"`{path.name}`" in readme, path.name
    for licence in ("CC BY-SA 4.0", "CC BY 4.0", "Apache-2.0"):
        assert licence in readme


def test_every_asset_subject_loads_with_lumbar_levels_in_verse_numbering():
    subjects = asset_subjects()
    assert [s.id for s in subjects] == list(ASSET_SUBJECTS)
    for subject in subjects:
        _, label = subject.load()
        names = {VERSE_NAMES[v] for v in label_centroids(label)}
        assert names & {"L2", "L3", "L4", "L5"}, (subject.id, names)
        assert all(re.fullmatch(r"[CTLS]\d+", n) for n in names)


def test_asset_subjects_take_an_explicit_split_and_reject_unknown_names():
    split = {"verse006": "test", "tptbox": "val"}
    assert {s.id: s.split for s in asset_subjects(split=split)} == split
    with pytest.raises(ConfigError, match="verse999"):
        asset_subjects(names=["verse999"])
    with pytest.raises(ConfigError, match="tptbox"):
        asset_subjects(split={"tptbox": "holdout"})
