"""Streamed reading: a scan read region by region gives what the whole image gives."""


import numpy as np
import SimpleITK as sitk

from spine_lightning.data.assets import asset_path
from spine_lightning.data.scan import Scan
from spine_lightning.inference.localization import canonical_grid

REAL = asset_path("real_ct", "lumbar_ct_3mm.nii.gz")


def test_streamed_regions_equal_the_whole_image(tmp_path):
    image = sitk.ReadImage(str(REAL))
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))  # uncompressed: streamable
    scan = Scan.streamed(tmp_path / "ct.nii")
    assert scan.size == image.GetSize() and scan.direction == image.GetDirection()
    region = scan.region((10, 20, 30), (40, 30, 20))
    expected = image[10:50, 20:50, 30:50]
    assert region.GetOrigin() == expected.GetOrigin()
    assert np.array_equal(sitk.GetArrayViewFromImage(region), sitk.GetArrayViewFromImage(expected))
    ijk = np.array([[0.0, 0.0, 0.0], [12.5, 3.0, 99.0]])
    physical = [image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk]
    assert np.allclose(scan.index_to_physical(ijk), physical)
    assert np.allclose(scan.physical_to_index(np.array(physical)), ijk)


def test_reused_regions_equal_fresh_reads_and_spare_the_file(tmp_path):
    """`reuse_regions`: a region inside one read before (a refined crop, moved by up to the margin)
    is cut from memory, with the same voxels and geometry as a fresh read; others are read."""
    image = sitk.ReadImage(str(REAL))
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))
    fresh, reusing = Scan.streamed(tmp_path / "ct.nii"), Scan.streamed(tmp_path / "ct.nii")
    reusing.reuse_regions(margin_mm=9.0)  # 3 voxels at 3 mm, +1
    reads = []
    read = reusing._read_region
    reusing._read_region = lambda start, size: reads.append(start) or read(start, size)
    boxes = [((20, 20, 10), (40, 30, 20)), ((23, 16, 13), (40, 30, 20)), ((17, 24, 6), (40, 30, 20)),
             ((60, 60, 40), (30, 30, 20)), ((0, 0, 0), (10, 10, 5))]
    for start, size in boxes:
        a, b = fresh.region(start, size), reusing.region(start, size)
        assert a.GetOrigin() == b.GetOrigin() and a.GetSize() == b.GetSize() == tuple(size)
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert len(reads) == 3  # the first box, moved by up to 4 voxels twice, is read once


def test_coarse_grid_built_from_thin_slabs_equals_the_whole(monkeypatch):
    image = sitk.ReadImage(str(REAL))
    whole = sitk.GetArrayFromImage(canonical_grid(image))
    slabs = Scan.slabs
    monkeypatch.setattr(Scan, "slabs", lambda self, max_voxels=0: slabs(self, 122 * 101 * 7))  # 16 slabs
    assert len(list(Scan.in_memory(image).slabs())) > 10
    assert np.allclose(sitk.GetArrayFromImage(canonical_grid(image)), whole, atol=1e-3)
