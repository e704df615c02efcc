"""A scan as it would be of a patient lying obliquely: for tests and benchmarks of the localiser."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def lying_obliquely(image: sitk.Image, label: sitk.Image, sagittal_deg: float, coronal_deg: float):
    """The scan with its anatomy rotated about the scan's centre (a patient lying obliquely):
    forwards/backwards by `sagittal_deg`, sideways by `coronal_deg`. The voxels stay as they are;
    the rotation goes into the direction cosines and origin (SimpleITK's TransformGeometry), so
    nothing is interpolated twice."""
    rotation = sitk.Euler3DTransform()
    rotation.SetCenter(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    rotation.SetRotation(np.radians(sagittal_deg), np.radians(coronal_deg), 0.0)
    # TransformGeometry takes the transform as resampling does (new space -> old): the inverse
    return tuple(sitk.TransformGeometry(img, rotation.GetInverse()) for img in (image, label))
