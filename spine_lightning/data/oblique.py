"""A scan as it would be of a patient lying obliquely: for tests and benchmarks of the localiser."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def lying_obliquely(image: sitk.Image, label: sitk.Image, sagittal_deg: float, coronal_deg: float):
    """The scan with its anatomy rotated about the scan's centre (a patient lying obliquely):
    forwards/backwards by `sagittal_deg`, sideways by `coronal_deg`. The voxels stay as they are;
    the rotation goes into the direction cosines and origin, so nothing is interpolated twice."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(np.radians(sagittal_deg), np.radians(coronal_deg), 0.0)
    r = np.array(rotation.GetMatrix()).reshape(3, 3)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    out = []
    for img in (image, label):
        img = sitk.Image(img)
        img.SetDirection((r @ np.array(img.GetDirection()).reshape(3, 3)).ravel().tolist())
        img.SetOrigin((centre + r @ (np.array(img.GetOrigin()) - centre)).tolist())
        out.append(img)
    return tuple(out)
