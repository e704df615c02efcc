import numpy as np
import SimpleITK as sitk

from spine_lightning.data.crops import crop_pair, inside_scan, label_centroids


def _oblique_label(direction, spacing=(0.7, 0.9, 2.5)):
    """A label map with an ellipsoid blob (value 22) and a neighbour (21) on an oblique grid."""
    size = (80, 70, 40)
    label = sitk.Image(size, sitk.sitkUInt8)
    label.SetSpacing(spacing)
    label.SetOrigin((-20.0, 35.0, -400.0))
    label.SetDirection(direction)
    arr = np.zeros(size[::-1], dtype=np.uint8)
    z, y, x = np.ogrid[: size[2], : size[1], : size[0]]
    arr[((x - 37) / 14.0) ** 2 + ((y - 31) / 10.0) ** 2 + ((z - 22) / 5.0) ** 2 <= 1] = 22
    arr[((x - 45) / 8.0) ** 2 + ((y - 30) / 8.0) ** 2 + ((z - 9) / 3.0) ** 2 <= 1] = 21
    labeled = sitk.GetImageFromArray(arr)
    labeled.CopyInformation(label)
    image = sitk.Cast(labeled, sitk.sitkInt16) * 40
    return image, labeled


def test_crop_centre_is_the_label_centroid_on_an_oblique_flipped_grid():
    rot = sitk.VersorTransform((0.3, -0.2, 0.9), 0.6).GetMatrix()
    flip = np.diag([-1.0, -1.0, 1.0])
    direction = tuple((np.asarray(rot).reshape(3, 3) @ flip).ravel())
    image, label = _oblique_label(direction)
    assert not np.allclose(np.asarray(label.GetDirection()).reshape(3, 3), np.eye(3))

    centroid = label_centroids(label)[22]
    size = (48, 48, 32)
    _, lab, frame = crop_pair(image, label, centroid, size, 1.0)
    target = lab == 22
    com = np.argwhere(target).mean(axis=0)  # (z, y, x) in crop voxels
    expected = (np.array(size[::-1]) - 1) / 2.0
    assert np.all(np.abs(com - expected) <= 0.5), (com, expected)
    # The crop is in the canonical orientation: identity direction, 1 mm isotropic.
    assert frame["direction"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert frame["spacing"] == [1.0, 1.0, 1.0]


def test_neighbour_is_background_and_outside_the_scan_is_not_anatomy():
    image, label = _oblique_label(tuple(np.eye(3).ravel()))
    centroid = label_centroids(label)[22]
    ct, lab, frame = crop_pair(image, label, centroid, (160, 160, 160), 1.0)
    assert set(np.unique(lab)) <= {0, 21, 22}
    outside = inside_scan(image, frame) == 0
    assert outside.any() and not lab[outside].any()  # the crop reaches past the scan: no label there
    assert np.all(ct[outside] == 0.0)  # the scan's border (0 HU here) repeated, as prediction does
    air, _, _ = crop_pair(image, label, centroid, (160, 160, 160), 1.0, outside="air")
    assert np.all(air[outside] == -1024.0)
