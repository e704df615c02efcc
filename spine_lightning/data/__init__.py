"""Data: reading CT and label maps (SimpleITK), label conventions, isotropic crops, boundary
weights, augmentation (TorchIO), the sources (phantoms, synthetic CT on real masks, real scans,
VerSe, TotalSegmentator, a manifest, mixes), the crop cache and the DataModule; behind
`preprocess.py`.

May import core only.
"""
