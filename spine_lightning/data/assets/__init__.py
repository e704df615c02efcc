"""Real CT and vertebra masks shipped inside the package (see README.md here for each file and its
licence), so that an installed package trains on real anatomy without a checkout."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """Path of a shipped file, e.g. `asset_path("verse", "sub-verse006_ct.nii.gz")`."""
    return ASSETS.joinpath(*parts)
