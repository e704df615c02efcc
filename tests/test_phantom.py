"""The procedural phantoms: deterministic from the seed, and their disc height is a setting."""

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.phantom import PhantomSpec, make_phantom
from spine_lightning.data.sources import phantom_subjects

COARSE = PhantomSpec(spacing=(1.6, 1.6, 3.0))


def _body_gaps(spec: PhantomSpec, seed: int = 11) -> np.ndarray:
    """Distance (mm) between neighbouring vertebrae's label centroids, foot to head (along the
    curved spine, not along z: lordosis tilts the column)."""
    _, label = make_phantom(seed, spec)
    centres = np.array(sorted((c for v, c in label_centroids(label).items() if v in VERSE_NAMES), key=lambda c: c[2]))
    return np.linalg.norm(np.diff(centres, axis=0), axis=1)


def test_same_seed_same_phantom():
    a, la = make_phantom(11, COARSE)
    b, lb = make_phantom(11, COARSE)
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert np.array_equal(sitk.GetArrayViewFromImage(la), sitk.GetArrayViewFromImage(lb))


def test_thicker_discs_spread_the_vertebrae_apart():
    thin = _body_gaps(PhantomSpec(spacing=COARSE.spacing, disc_mm=(2.0, 2.0)))
    thick = _body_gaps(PhantomSpec(spacing=COARSE.spacing, disc_mm=(10.0, 10.0)))
    # Same seed, same bodies: the gaps grow by the disc difference (8 mm times the size scale
    # 0.88-1.12) on average; each one a little more or less, as lordosis bends the longer column.
    growth = thick - thin
    assert 8.0 * 0.88 <= growth.mean() <= 8.0 * 1.12 and np.all(growth > 8.0 * 0.75), (thin, thick)


def test_subjects_carry_the_disc_setting_into_their_cache_key():
    a = phantom_subjects(1, 0, 0)[0]
    b = phantom_subjects(1, 0, 0, disc_mm=(3.0, 11.0))[0]
    assert a.seed == b.seed and a.cache_key() != b.cache_key()
    assert b.spec.disc_mm == (3.0, 11.0)
