"""Several subject sources in one run (`data=mix`): each source brings its own subjects and split,
and a sampling weight; training draws crops from each source in proportion to its weight."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from spine_lightning.core.errors import ConfigError
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.splits import assign_folds


@dataclass(frozen=True)
class SourcedSubject:
    """A subject of one source of a mix: its id starts with the source's name (unique across
    sources), everything else from the wrapped subject."""

    id: str
    source: str
    weight: float
    subject: object
    split: str | None = None

    def load(self):
        return self.subject.load()

    def cache_key(self) -> str:
        return self.subject.cache_key()

    def source_files(self) -> list[str]:
        return getattr(self.subject, "source_files", lambda: [])()

    @property
    def label_source(self) -> str | None:
        return getattr(self.subject, "label_source", None)

    def crop_centres(self, label):
        centres = getattr(self.subject, "crop_centres", None)
        return centres(label) if centres else label_centroids(label)


def mixed_subjects(**sources) -> list[SourcedSubject]:
    """Subjects of every source `name: {subjects: [...], weight: w}` (optional `fold`, `num_folds`,
    `split_seed` for a source whose subjects bring no split); a null source is left out, so a config
    can hold an empty slot for a source enabled from the command line."""
    mixed = []
    for name, spec in sources.items():
        if spec is None:
            continue
        key = f"data.subjects.{name}"
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ConfigError(key, name, "a source name of letters, digits and _ (it names metrics)")
        if not hasattr(spec, "get") or spec.get("subjects") is None:
            raise ConfigError(key, spec, "{subjects: <a subject list, e.g. a _target_ factory>, weight: w}")
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ConfigError(f"{key}.weight", weight, "a sampling weight >= 0")
        subjects = assign_folds(list(spec["subjects"]), spec.get("fold", 0), spec.get("num_folds", 5),
                                spec.get("split_seed", 0))
        mixed += [SourcedSubject(s.id if s.id.startswith(f"{name}-") else f"{name}-{s.id}", name, float(weight), s,
                                 s.split) for s in subjects]
    if not mixed:
        raise ConfigError("data.subjects", sorted(sources), "at least one source with subjects")
    return mixed


def source_sampler(crops: list[dict], weights: dict[str, float], num_samples: int):
    """Draws crops so that each source comes up in proportion to its weight, whatever its crop count
    (a source's weight is shared among its crops); sources without training crops drop out."""
    counts: dict[str, int] = {}
    for crop in crops:
        counts[crop["source"]] = counts.get(crop["source"], 0) + 1
    if not any(weights.get(s, 0.0) > 0 for s in counts):
        raise ConfigError("data.subjects.<source>.weight", weights, "a weight > 0 for a source with training crops")
    per_crop = [weights.get(c["source"], 0.0) / counts[c["source"]] for c in crops]
    return torch.utils.data.WeightedRandomSampler(per_crop, num_samples=int(num_samples), replacement=True)

