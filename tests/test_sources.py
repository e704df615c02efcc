"""Label conventions, dataset layouts (VerSe, TotalSegmentator, manifest) and k-fold splits."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from real_ct_trees import CT, LABEL, write_manifest, write_totalseg_tree, write_verse_tree

from spine_lightning.core.errors import ConfigError, SpineError
from spine_lightning.data.crops import label_centroids
from spine_lightning.data.file_subject import FileSubject, read_verse_centroids
from spine_lightning.data.labels import TOTALSEG_IDS, VERSE_LABELS, resolve_label_map
from spine_lightning.data.sources import folder_subjects, totalseg_subjects, verse_subjects
from spine_lightning.data.splits import assign_folds


def test_verse_numbering_and_totalseg_ids():
    assert [VERSE_LABELS[f"C{i}"] for i in (1, 7)] == [1, 7]
    assert [VERSE_LABELS[f"T{i}"] for i in (1, 12)] == [8, 19]
    assert [VERSE_LABELS[f"L{i}"] for i in (1, 5)] == [20, 24]
    assert VERSE_LABELS["L6"] == 25 and VERSE_LABELS["T13"] == 28
    assert {i: TOTALSEG_IDS[i] for i in range(26, 34)} == {
        26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


def test_label_maps_presets_and_user_mappings():
    assert resolve_label_map(None) is None and resolve_label_map("verse") is None
    assert resolve_label_map("totalseg")[30] == VERSE_LABELS["L2"]
    assert resolve_label_map({"5": "L3", 6: 24}) == {5: 22, 6: 24}
    with pytest.raises(ConfigError, match="data.label_map"):
        resolve_label_map("nnunet")
    with pytest.raises(ConfigError, match="data.label_map='L9'"):
        resolve_label_map({1: "L9"})


def test_verse_centroid_json_axis_code_is_honoured(tmp_path):
    # Identity (LPS) grid: in P,I,R order a voxel (x, y, z) has coordinates (y, nz-1-z, nx-1-x).
    label = sitk.Image([20, 30, 40], sitk.sitkUInt8)
    label.SetSpacing((0.5, 1.0, 2.0))
    label.SetOrigin((-10.0, 5.0, 100.0))
    x, y, z = 4.0, 11.0, 7.0
    path = _json(tmp_path, [{"direction": ["P", "I", "R"]}, {"label": 21, "X": y, "Y": 39 - z, "Z": 19 - x}])
    centre = read_verse_centroids(path, label)[21]
    assert np.allclose(centre, (-10.0 + 0.5 * x, 5.0 + 1.0 * y, 100.0 + 2.0 * z))


def _json(folder, data):
    path = folder / "sub-1_seg-subreg_ctd.json"
    path.write_text(json.dumps(data))
    return path


def test_bad_centroid_file_names_itself(tmp_path):
    with pytest.raises(SpineError, match="_ctd.json: not a VerSe centroid file"):
        read_verse_centroids(_json(tmp_path, [{"label": 20}]), sitk.Image([4, 4, 4], sitk.sitkUInt8))


def test_folds_partition_subjects_and_every_subject_is_tested_once():
    subjects = [FileSubject(f"s{i}", "ct") for i in range(11)]
    tested = []
    for fold in range(5):
        split = {s.id: s.split for s in assign_folds(subjects, fold, 5, seed=3)}
        assert set(split.values()) == {"train", "val", "test"}
        tested += [i for i, s in split.items() if s == "test"]
        assert split == {s.id: s.split for s in assign_folds(subjects, fold, 5, seed=3)}  # deterministic
    assert sorted(tested) == sorted(s.id for s in subjects)
    three = {s.split for s in assign_folds(subjects[:3], 0, 5)}
    assert three == {"train", "val", "test"}  # three subjects are enough
    with pytest.raises(ConfigError, match="data.fold=4"):
        assign_folds(subjects[:3], 4, 5)  # fold 4 of 5 is empty with 3 subjects


def test_manifest_with_split_column_and_relative_paths(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("ct.nii.gz", "lab.nii.gz"):
        (tmp_path / "img" / name).symlink_to(CT if name == "ct.nii.gz" else LABEL)
    rows = [(f"p{i}", "img/ct.nii.gz", "img/lab.nii.gz") for i in range(4)]
    manifest = write_manifest(tmp_path / "m.csv", rows, {"split": ["train", "train", "val", "test"]})
    subjects = folder_subjects(manifest, label_map="totalseg")
    assert [s.split for s in subjects] == ["train", "train", "val", "test"]
    assert subjects[0].image == str(tmp_path / "img" / "ct.nii.gz")
    assert assign_folds(subjects, 0, 5) == subjects  # an explicit split is kept


@pytest.mark.parametrize("header,message", [
    ("subject,image\n", "missing column.*label"),
    ("subject,image,label,split\na,x,y,train\nb,x,y,\nc,x,y,test\n", "split column must be filled"),
    ("subject,image,label,split\na,x,y,holdout\nb,x,y,val\nc,x,y,test\n", "line 2: split 'holdout'"),
])
def test_bad_manifests_say_what_is_wrong(tmp_path, header, message):
    (tmp_path / "m.csv").write_text(header)
    with pytest.raises(SpineError, match=message):
        folder_subjects(tmp_path / "m.csv")


def test_totalseg_layout_reads_per_structure_masks_into_verse_numbering(tmp_path):
    subjects = totalseg_subjects(write_totalseg_tree(tmp_path, n=3), levels=["L2", "L5"])
    assert [s.id for s in subjects] == ["s0000", "s0001", "s0002"]
    _, label = subjects[0].load()
    values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
    assert values == {0, VERSE_LABELS["L2"], VERSE_LABELS["L5"]}
    ts = sitk.GetArrayFromImage(sitk.ReadImage(str(LABEL)))
    assert np.array_equal(sitk.GetArrayViewFromImage(label) == 21, ts == 30)


def test_missing_roots_and_empty_trees(tmp_path):
    with pytest.raises(SpineError, match="nowhere: no such folder"):
        verse_subjects(tmp_path / "nowhere")
    with pytest.raises(SpineError, match="found 0 subject"):
        verse_subjects(tmp_path)
    with pytest.raises(ConfigError, match="data.root"):
        totalseg_subjects("???")


def test_verse_tree_oblique_2mm_pairs_files_and_reads_centroids_in_physical_space(tmp_path):
    subjects = verse_subjects(write_verse_tree(tmp_path, n=3))
    assert [s.id for s in subjects] == ["sub-verse000", "sub-verse001", "sub-verse002"]
    for subject in subjects[:2]:
        assert subject.centroids.endswith("_seg-subreg_ctd.json")
        image, label = subject.load()
        assert np.allclose(image.GetSpacing(), (2.0, 2.0, 2.0))
        assert not np.allclose(np.asarray(image.GetDirection()).reshape(3, 3), np.eye(3), atol=0.1)
        from_json = read_verse_centroids(subject.centroids, label)
        from_mask = label_centroids(label)
        assert set(from_json) == set(from_mask) >= {21, 22, 23, 24}
        for value in from_json:  # P,I,R voxel coordinates back to the same physical point
            assert np.linalg.norm(np.subtract(from_json[value], from_mask[value])) < 1e-3
