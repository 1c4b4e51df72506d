"""The student's transfer set: a seeded, class-stratified subset of the transfer split."""

from __future__ import annotations

import numpy as np

from harness.config import TransferConfig
from harness.data.sources import Split

# Mixed into the study's seed for the subset's draw, so it is a stream of its own (the
# validation slice uses the seed alone).
SUBSET_STREAM = 12


def transfer_positions(labels: np.ndarray, cfg: TransferConfig, seed: int) -> np.ndarray:
    """Positions (sorted) in the transfer split of the examples the student learns from.

    The omitted classes are dropped; of every other class, `fraction` of its
    examples (rounded, at least one) are kept, drawn with the study's seed: a
    class-stratified subset that the same file and seed always draw alike. Only
    the transfer split is ever cut: validation and test stay whole.
    """
    if cfg.default:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, SUBSET_STREAM])
    omitted = set(cfg.omit_classes or [])
    keep = []
    for k in np.unique(labels):  # in class order, so the draw does not depend on the examples' order
        if int(k) in omitted:
            continue
        members = np.flatnonzero(labels == k)
        n = max(1, int(round(cfg.fraction * len(members))))
        keep.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def subset(split: Split, positions: np.ndarray) -> Split:
    return Split(split.images[positions], split.labels[positions], split.index[positions])


