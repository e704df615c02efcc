"""Leave-one-level-out folds on the real lumbar CT: four manifests, each training on three of its
L2-L5 vertebrae and testing on the fourth.

    python experiments/real_ct_lolo/make_folds.py [OUT_DIR]     (default: logs/real_ct_lolo_data)

Every level becomes its own "subject": the CT plus a label map holding only that level (VerSe
numbering), so the framework's subject-level split becomes a level-level split. Validation (for
checkpoint selection) reuses one training level under another subject id: the held-out level is
never seen before testing.
"""

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "spine_lightning" / "data" / "assets" / "real_ct"
TOTALSEG = {"L2": 30, "L3": 29, "L4": 28, "L5": 27}
VERSE = {"L2": 21, "L3": 22, "L4": 23, "L5": 24}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    label = sitk.ReadImage(str(REAL / "lumbar_ct_3mm_vertebrae.nii.gz"))
    arr = sitk.GetArrayFromImage(label)
    for level, ts_id in TOTALSEG.items():
        one = sitk.GetImageFromArray(np.where(arr == ts_id, VERSE[level], 0).astype(np.uint8))
        one.CopyInformation(label)
        sitk.WriteImage(one, str(out / f"label_{level}.nii.gz"))
    ct = REAL / "lumbar_ct_3mm.nii.gz"
    for held_out in TOTALSEG:
        train = [lvl for lvl in TOTALSEG if lvl != held_out]
        rows = [(f"level-{lvl}", lvl, "train") for lvl in train]
        rows += [(f"val-{train[0]}", train[0], "val"), (f"level-{held_out}", held_out, "test")]
        lines = ["subject,image,label,split"]
        lines += [f"{sid},{ct},label_{lvl}.nii.gz,{split}" for sid, lvl, split in rows]
        (out / f"holdout_{held_out}.csv").write_text("\n".join(lines) + "\n")
    print(f"wrote 4 manifests to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "logs" / "real_ct_lolo_data")
