"""On-disk preprocessing cache (the nnU-Net idea): every (subject, level) crop is computed once and
stored as .npy files that training memory-maps, so RAM stays flat however many subjects there are.

An entry's key is a hash of the source files' *content*, the subject's label settings, the level,
the crop geometry (spacing, size) and what fills the crop past the scan's edge, so a changed file or
setting invalidates only the entries it touches. Boundary weight maps sit next to their crop, one
file per edge weight, so changing `loss.edge_weight` recomputes only those small maps. Every entry
is written into a temporary folder and renamed into place: an interrupted run never leaves a
half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from spine_lightning.core.io import atomic_path, sha256, write_json
from spine_lightning.data.boundary import boundary_weights
from spine_lightning.data.crops import crop_pair, inside_scan, label_centroids
from spine_lightning.data.labels import level_value

CACHE_VERSION = 2  # bump when the crop computation changes (2: valid.npy, the inside-the-scan mask)


def file_digest(path, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file's content (of every file, by name, for a DICOM folder).

    Hashing a thousand CTs on every run is slow, so the digest is remembered under `memo_dir`
    keyed by path, size and modification time; a rewritten file gets a new stat and is re-hashed.
    """
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stat_key = hashlib.sha1(json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
                            .encode()).hexdigest()
    memo = memo_dir / "digests" / stat_key if memo_dir else None
    if memo and memo.exists():
        return memo.read_text().strip()
    if path.is_dir():  # a DICOM series: every file's digest under its name in the folder
        listing = [[f.relative_to(path).as_posix(), sha256(f)] for f in files]
        value = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    else:
        value = sha256(path)
    if memo:
        with atomic_path(memo) as tmp:
            tmp.write_text(value)
    return value


def subject_fingerprint(subject, memo_dir: Path | None = None) -> str:
    """What the subject's crops depend on: its source files' contents and its own settings."""
    files = getattr(subject, "source_files", lambda: [])()
    return json.dumps([subject.cache_key(), [file_digest(f, memo_dir) for f in files]])


def entry_key(fingerprint: str, level: str, spacing: float, crop_size, outside: str = "repeat") -> str:
    settings = dict(version=CACHE_VERSION, source=fingerprint, level=level, spacing=float(spacing),
                    crop_size=[int(n) for n in crop_size], outside=outside)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:40]


class CropCache:
    """Crops on disk under `root/<key[:2]>/<key>/`: meta.json, hu.npy, target.npy, valid.npy, weights-<w>.npy."""

    def __init__(self, root):
        self.root = Path(root).expanduser()

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def keys(self, subject, levels, spacing, crop_size, outside: str = "repeat") -> dict[str, str]:
        fingerprint = subject_fingerprint(subject, self.root)
        return {level: entry_key(fingerprint, level, spacing, crop_size, outside) for level in levels}

    def missing(self, keys: dict[str, str]) -> list[str]:
        return [level for level, key in keys.items() if not (self.entry(key) / "meta.json").exists()]

    def fill(self, subject, levels, spacing, crop_size, edge_weight: float, outside: str = "repeat") -> int:
        """Compute and store the subject's missing entries; the CT is read only if one is missing.
        Returns how many entries this call placed (a parallel worker may have placed the same one)."""
        keys = self.keys(subject, levels, spacing, crop_size, outside)
        todo = self.missing(keys)
        if not todo:
            return 0
        image, label = subject.load()
        centres = subject.crop_centres(label) if hasattr(subject, "crop_centres") else label_centroids(label)
        placed = 0
        for level in todo:
            value = level_value(level)
            meta = dict(subject=subject.id, level=level, present=value in centres)
            arrays = {}
            if meta["present"]:
                hu, lab, frame = crop_pair(image, label, centres[value], crop_size, spacing, outside)
                target = (lab == value).astype(np.uint8)
                arrays = {"hu": hu.astype(np.float32), "target": target, "valid": inside_scan(image, frame),
                          weights_name(edge_weight): boundary_weights(target, edge_weight)}
                meta.update(centre=[float(c) for c in centres[value]], frame=frame)
            placed += self._write_entry(self.entry(keys[level]), meta, arrays)
        return placed

    def _write_entry(self, final: Path, meta: dict, arrays: dict) -> bool:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", arr)
            write_json(tmp / "meta.json", meta)  # last: an entry with meta.json is complete
            try:
                os.rename(tmp, final)
                return True
            except OSError:  # another worker wrote the same entry first: theirs is as good
                if not (final / "meta.json").exists():
                    raise
                return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self, key: str, edge_weight: float) -> dict:
        """An entry's record: meta plus the paths of its arrays (opened memory-mapped on use)."""
        folder = self.entry(key)
        record = json.loads((folder / "meta.json").read_text())
        if record["present"]:
            weights = folder / f"{weights_name(edge_weight)}.npy"
            if not weights.exists():  # a new edge weight: only this small map is recomputed
                target = np.load(folder / "target.npy")
                with atomic_path(weights) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, boundary_weights(target, edge_weight))
            record.update(hu_path=str(folder / "hu.npy"), target_path=str(folder / "target.npy"),
                          valid_path=str(folder / "valid.npy"), weights_path=str(weights))
        return record


def weights_name(edge_weight: float) -> str:
    return f"weights-{float(edge_weight):g}"


def fill_one(cache_root, subject, levels, spacing, crop_size, edge_weight, outside) -> int:
    """Process-pool entry point (module level so that it pickles)."""
    return CropCache(cache_root).fill(subject, levels, spacing, crop_size, edge_weight, outside)
