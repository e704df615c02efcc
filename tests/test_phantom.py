"""The procedural phantoms: deterministic from the seed, and their disc height is a setting."""

import numpy as np
import SimpleITK as sitk

from spine_lightning.data.crops import label_centroids
from spine_lightning.data.labels import VERSE_NAMES
from spine_lightning.data.phantom import PhantomSpec, make_phantom
from spine_lightning.data.sources import phantom_subjects

COARSE = PhantomSpec(spacing=(1.6, 1.6, 3.0))


def _body_gaps(spec: PhantomSpec, seed: int = 11) -> np.ndarray:
    """Distance (mm) between neighbouring vertebrae's label centroids along z, S1 to T12."""
    _, label = make_phantom(seed, spec)
    z = sorted(c[2] for v, c in label_centroids(label).items() if v in VERSE_NAMES)
    return np.diff(z)


def test_same_seed_same_phantom():
    a, la = make_phantom(11, COARSE)
    b, lb = make_phantom(11, COARSE)
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert np.array_equal(sitk.GetArrayViewFromImage(la), sitk.GetArrayViewFromImage(lb))


def test_thicker_discs_spread_the_vertebrae_apart():
    thin = _body_gaps(PhantomSpec(spacing=COARSE.spacing, disc_mm=(2.0, 2.0)))
    thick = _body_gaps(PhantomSpec(spacing=COARSE.spacing, disc_mm=(10.0, 10.0)))
    # Same seed, same bodies: each gap grows by the disc difference (8 mm times the size scale 0.88-1.12).
    assert np.all(thick - thin > 8.0 * 0.85) and np.all(thick - thin < 8.0 * 1.15), (thin, thick)


def test_subjects_carry_the_disc_setting_into_their_cache_key():
    a = phantom_subjects(1, 0, 0)[0]
    b = phantom_subjects(1, 0, 0, disc_mm=(3.0, 11.0))[0]
    assert a.seed == b.seed and a.cache_key() != b.cache_key()
    assert b.spec.disc_mm == (3.0, 11.0)
