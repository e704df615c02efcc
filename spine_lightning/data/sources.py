"""Dataset sources: each yields a list of subjects, every one able to load its CT and label map."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.data.file_subject import FileSubject
from spine_lightning.data.labels import DEFAULT_LEVELS, check_levels, resolve_label_map, totalseg_structure_file
from spine_lightning.data.phantom import PHANTOM_VERSION, PhantomSpec, make_phantom

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhantomSubject:
    """One procedural subject; everything follows from the seed."""

    id: str
    seed: int
    spec: PhantomSpec = field(default_factory=PhantomSpec)
    split: str | None = None

    def load(self) -> tuple[sitk.Image, sitk.Image]:
        return make_phantom(self.seed, self.spec)

    def cache_key(self) -> str:
        return f"phantom:v{PHANTOM_VERSION}:{self.seed}:{self.spec}"


def phantom_subjects(num_train: int = 12, num_val: int = 2, num_test: int = 4, seed: int = 0,
                     spacing=(0.8, 0.8, 2.5), noise_hu: float = 25.0,
                     disc_mm=(1.8, 3.5)) -> list[PhantomSubject]:
    """Phantom subjects with their split fixed by construction (train, then val, then test seeds)."""
    spec = PhantomSpec(spacing=tuple(float(s) for s in spacing), noise_hu=float(noise_hu),
                       disc_mm=tuple(float(d) for d in disc_mm))
    subjects, index = [], 0
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        for _ in range(count):
            subjects.append(PhantomSubject(f"phantom-{seed:03d}-{index:04d}", seed * 100_003 + index, spec, split))
            index += 1
    return subjects


# --- file-based sources: VerSe, TotalSegmentator, a manifest CSV ------------------------------------

def _label_map_items(label_map) -> tuple[tuple[int, int], ...] | None:
    mapping = resolve_label_map(label_map)
    return tuple(sorted(mapping.items())) if mapping is not None else None


def _root(root, key: str = "data.root") -> Path:
    if root in (None, "", "???"):
        raise ConfigError(key, root, "the dataset's folder, e.g. data.root=/data/verse")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SpineError(f"{path}: no such folder ({key})")
    return path


def _need_some(subjects: list, where) -> list:
    # Only "none" is refused here: eval scores any number; training's splits check (assign_folds,
    # DataModule.check_subjects) asks for a train, val and test subject.
    if not subjects:
        raise SpineError(f"{where}: found 0 subject(s)")
    return subjects


def verse_subjects(root, label_map=None) -> list[FileSubject]:
    """VerSe BIDS layout: `rawdata/sub-*/*_ct.nii.gz`, `derivatives/sub-*/*_seg-vert_msk.nii.gz`,
    optional `derivatives/sub-*/*_seg-subreg_ctd.json`. Files are paired by their name stem."""
    root = _root(root)
    subjects = []
    for ct in sorted(root.glob("rawdata/sub-*/*_ct.nii.gz")):
        stem = ct.name[: -len("_ct.nii.gz")]
        derivatives = root / "derivatives" / ct.parent.name
        mask = derivatives / f"{stem}_seg-vert_msk.nii.gz"
        if not mask.exists():
            log.warning("%s: no mask %s; subject skipped", ct, mask.name)
            continue
        ctd = derivatives / f"{stem}_seg-subreg_ctd.json"
        subjects.append(FileSubject(stem, str(ct), label=str(mask), label_map=_label_map_items(label_map),
                                    centroids=str(ctd) if ctd.exists() else None))
    return _need_some(subjects, f"{root} (VerSe layout rawdata/sub-*/*_ct.nii.gz)")


def totalseg_subjects(root, levels=DEFAULT_LEVELS) -> list[FileSubject]:
    """TotalSegmentator dataset: one folder per subject with `ct.nii.gz` and `segmentations/`
    holding one binary mask per structure (`vertebrae_L2.nii.gz`, ...); only the requested levels
    are read (neighbours are background in a crop anyway)."""
    root = _root(root)
    levels = check_levels(levels)
    subjects = []
    for ct in sorted(root.glob("*/ct.nii.gz")):
        folder = ct.parent / "segmentations"
        masks = tuple((lvl, str(folder / totalseg_structure_file(lvl))) for lvl in levels)
        present = tuple((lvl, f) for lvl, f in masks if Path(f).exists())
        if not present:
            log.warning("%s: no vertebra mask of %s in segmentations/; subject skipped", ct.parent, levels)
            continue
        subjects.append(FileSubject(ct.parent.name, str(ct), structures=present))
    return _need_some(subjects, f"{root} (TotalSegmentator layout */ct.nii.gz)")


MANIFEST_COLUMNS = ("subject", "image", "label")


def folder_subjects(manifest, label_map=None) -> list[FileSubject]:
    """Subjects listed in a CSV with columns `subject,image,label` and optional `centroids`, `split`
    (train/val/test; all rows or none) and `series_uid`. Relative paths are relative to the CSV."""
    if manifest in (None, "", "???"):
        raise ConfigError("data.manifest", manifest, "a CSV file with columns subject,image,label")
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise SpineError(f"{manifest}: no such file (data.manifest)")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    missing = [c for c in MANIFEST_COLUMNS if c not in columns]
    if missing:
        raise SpineError(f"{manifest}: missing column(s) {', '.join(missing)}; need subject,image,label "
                         "(optional centroids, split, series_uid)")
    splits = {(row.get("split") or "").strip() for row in rows}
    if len(splits) > 1 and "" in splits:
        raise SpineError(f"{manifest}: the split column must be filled in every row or in none")
    mapping = _label_map_items(label_map)
    subjects = []
    for n, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip() or None
        if split not in (None, "train", "val", "test"):
            raise SpineError(f"{manifest}: line {n}: split {split!r} is not one of train, val, test")

        def path(value):
            return str(manifest.parent / value.strip()) if value and value.strip() else None

        if not row["subject"].strip() or not path(row["image"]) or not path(row["label"]):
            raise SpineError(f"{manifest}: line {n}: subject, image and label must not be empty")
        subjects.append(FileSubject(row["subject"].strip(), path(row["image"]), label=path(row["label"]),
                                    label_map=mapping, centroids=path(row.get("centroids")), split=split,
                                    series_uid=(row.get("series_uid") or "").strip() or None))
    return _need_some(subjects, manifest)


# --- real CT shipped with the package (spine_lightning/data/assets/README.md) -------------------------

# name → (CT, label map, label convention), relative to the asset folder
ASSET_SUBJECTS = {
    "lumbar_ct_3mm": ("real_ct/lumbar_ct_3mm.nii.gz", "real_ct/lumbar_ct_3mm_vertebrae.nii.gz", "totalseg"),
    "verse006": ("verse/sub-verse006_ct.nii.gz", "verse/sub-verse006_seg-vert_msk.nii.gz", None),
    "verse007": ("verse/sub-verse007_ct.nii.gz", "verse/sub-verse007_seg-vert_msk.nii.gz", None),
    "tptbox": ("verse/sub-tptbox_ct.nii.gz", "verse/sub-tptbox_seg-vert_msk.nii.gz", None),
}


def asset_subjects(split=None, names=None) -> list[FileSubject]:
    """The real CTs shipped with the package. `split`: {name: train|val|test} for every subject
    (they are too few for k-fold); `names`: which ones (default: the keys of `split`, else all)."""
    from spine_lightning.data.assets import asset_path

    names = list(names if names is not None else (split or ASSET_SUBJECTS))
    unknown = [n for n in names if n not in ASSET_SUBJECTS]
    if unknown or not names:
        raise ConfigError("asset_subjects.names", unknown or names, f"some of {', '.join(ASSET_SUBJECTS)}")
    split = dict(split or {})
    for name in names:
        if split and split.get(name) not in ("train", "val", "test"):
            raise ConfigError(f"asset_subjects.split.{name}", split.get(name), "one of train, val, test")
    subjects = []
    for name in names:
        ct, label, convention = ASSET_SUBJECTS[name]
        subjects.append(FileSubject(name, str(asset_path(ct)), label=str(asset_path(label)),
                                    label_map=_label_map_items(convention), split=split.get(name)))
    return subjects
