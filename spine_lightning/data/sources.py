"""Dataset sources: each yields a list of subjects, every one able to load its CT and label map."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from .phantom import PhantomSpec, make_phantom


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
        return f"phantom:{self.seed}:{self.spec}"


def phantom_subjects(num_train: int = 12, num_val: int = 2, num_test: int = 4, seed: int = 0,
                     spacing=(0.8, 0.8, 2.5), noise_hu: float = 25.0) -> list[PhantomSubject]:
    """Phantom subjects with their split fixed by construction (train, then val, then test seeds)."""
    spec = PhantomSpec(spacing=tuple(float(s) for s in spacing), noise_hu=float(noise_hu))
    subjects, index = [], 0
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        for _ in range(count):
            subjects.append(PhantomSubject(f"phantom-{seed:03d}-{index:04d}", seed * 100_003 + index, spec, split))
            index += 1
    return subjects
