"""Patient-identifying DICOM tags never reach outputs, logs or configs."""

import locale
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from conftest import DATA, ROOT, run_cli

from spine_lightning.data.imageio import read_image

NAME, PATIENT_ID = "Doe^Jane", "SECRET-12345"


@pytest.fixture
def identified_series(tmp_path):
    """The real DICOM series rewritten with PatientName and PatientID set."""
    saved = locale.setlocale(locale.LC_ALL)
    out = tmp_path / "identified"
    out.mkdir()
    for path in sorted((DATA / "real_ct" / "dicom_series").glob("*.dcm")):
        original = sitk.ReadImage(str(path))
        img = sitk.Cast(original, sitk.sitkInt16)
        # The geometry and series tags of the original slice, plus the patient's identity.
        for tag in ("0020|000e", "0020|0013", "0020|0032", "0020|0037", "0008|0060"):
            img.SetMetaData(tag, original.GetMetaData(tag))
        img.SetMetaData("0010|0010", NAME)
        img.SetMetaData("0010|0020", PATIENT_ID)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(out / path.name))
        writer.Execute(img)
    locale.setlocale(locale.LC_ALL, saved)  # SimpleITK's DICOM writer leaves the locale at "C"
    assert all(PATIENT_ID.encode() in p.read_bytes() for p in out.glob("*.dcm"))  # the fixture is identified
    yield out
    shutil.rmtree(out)


def _texts(folder: Path):
    for path in folder.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


def test_the_reader_hands_on_no_dicom_tag(identified_series):
    image = read_image(identified_series)
    assert image.GetSize() == (512, 512, 20)
    assert image.GetMetaDataKeys() == ()


def test_predict_on_an_identified_series_leaves_no_trace(identified_series, tiny_checkpoint, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    proc = run_cli(["predict.py", f"ckpt_path={tiny_checkpoint}", f"input={identified_series}",
                    f"output_dir={out}", f"hydra.run.dir={run}"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(out.iterdir())  # it did write outputs: a label map and a report
    for secret in (NAME, PATIENT_ID, "Doe", "SECRET"):
        assert secret not in proc.stdout and secret not in proc.stderr
        for path, data in [*_texts(out), *_texts(run)]:
            assert secret.encode() not in data, f"{secret} found in {path}"
