import numpy as np

from spine_lightning.data.boundary import boundary_weights


def test_weights_are_edge_weight_exactly_on_the_contour_of_a_cube():
    target = np.zeros((8, 9, 10), dtype=np.uint8)
    target[2:6, 3:7, 2:7] = 1  # a 4×4×5 box
    weights = boundary_weights(target, edge_weight=1.1)

    # By hand: contour voxels are the box minus its interior (the box shrunk by one on each face).
    interior = np.zeros_like(target, dtype=bool)
    interior[3:5, 4:6, 3:6] = True
    contour = target.astype(bool) & ~interior
    assert contour.sum() == 4 * 4 * 5 - 2 * 2 * 3
    assert np.all(weights[contour] == np.float32(1.1))
    assert np.all(weights[~contour] == 1.0)


def test_background_next_to_the_object_keeps_weight_one():
    target = np.zeros((5, 5, 5), dtype=np.uint8)
    target[2, 2, 2] = 1
    weights = boundary_weights(target, edge_weight=2.0)
    assert weights[2, 2, 2] == 2.0
    assert weights.sum() == 2.0 + (125 - 1)


def test_object_touching_the_crop_border_is_not_a_contour_there():
    target = np.zeros((4, 4, 4), dtype=np.uint8)
    target[:, :, :2] = 1  # fills the crop up to its edge on five sides
    weights = boundary_weights(target, edge_weight=1.5)
    assert np.all(weights[:, :, 1] == 1.5)  # the face next to background
    assert np.all(weights[:, :, 0] == 1.0)  # the crop border is not a boundary of the anatomy
