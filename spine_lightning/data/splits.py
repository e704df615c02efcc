"""Subject-level splits: k-fold cross-validation for subjects that do not bring their own split."""

from __future__ import annotations

import dataclasses

import numpy as np

from spine_lightning.core.errors import ConfigError, SpineError


def assign_folds(subjects: list, fold: int = 0, num_folds: int = 5, seed: int = 0) -> list:
    """Subjects with `split` set: fold `fold` of a seeded shuffle is the test set, one subject in
    every (num_folds - 1) of the rest is validation (at least one), the others train.

    Subjects that already carry a split (phantoms, a manifest's split column) are left as they are;
    a mixture of both is an error, since the two would not agree on which subjects are held out.
    """
    if all(s.split is not None for s in subjects):
        return list(subjects)
    if any(s.split is not None for s in subjects):
        raise SpineError("some subjects have a split and others not; give every subject a split or none")
    if int(num_folds) < 2:
        raise ConfigError("data.num_folds", num_folds, "an integer >= 2")
    if not 0 <= int(fold) < int(num_folds):
        raise ConfigError("data.fold", fold, f"an integer in 0..{int(num_folds) - 1} "
                          f"(data.num_folds={num_folds})")
    ids = sorted(s.id for s in subjects)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    folds = np.array_split(np.array(order, dtype=object), int(num_folds))
    test = set(folds[int(fold)].tolist())
    rest = [i for i in order if i not in test]
    if not test or len(rest) < 2:
        raise ConfigError("data.fold", fold, f"a fold that leaves test, val and train subjects; "
                          f"{len(ids)} subjects in data.num_folds={num_folds} folds give fold {fold} "
                          f"{len(test)} test subject(s)")
    val = set(rest[: max(1, len(rest) // int(num_folds))])
    split = {i: "test" if i in test else "val" if i in val else "train" for i in ids}
    return [dataclasses.replace(s, split=split[s.id]) for s in subjects]
