"""Helpers shared by the loaders for datasets stored as classes of images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fometa.data.cache import data_warning
from fometa.errors import DataError


def common_count(counts: Mapping[str, int], what: str) -> int:
    """The number of images kept per class: the smallest count in `counts` (class name -> count).

    Classes of one array must hold the same number of images. When they do not,
    every class is truncated to the smallest count (keeping its first images in
    file-name order) and a `DataWarning` names the smallest and largest class;
    `what` names the collection in messages (e.g. ``"Mini-ImageNet train split"``).
    An empty collection, or a class with no image, is a `DataError`.
    """
    if not counts:
        raise DataError(f"{what} holds no classes")
    smallest = min(counts, key=lambda k: (counts[k], k))
    largest = max(counts, key=lambda k: (counts[k], k))
    low, high = counts[smallest], counts[largest]
    if low == 0:
        raise DataError(f"{what}: class {smallest} holds no images")
    if low != high:
        uneven = sum(1 for c in counts.values() if c != high)
        data_warning(
            f"{what}: classes hold different numbers of images ({smallest}: {low}, "
            f"{largest}: {high}, {uneven} of {len(counts)} classes below {high}); "
            f"keeping the first {low} images (by file name) of every class",
            stacklevel=3,
        )
    return low


def classes_from_labels(images: np.ndarray, labels: np.ndarray, keep: Sequence[int] | None = None,
                        what: str = "the labelled images") -> np.ndarray:
    """Any labelled image array as the `[classes, images_per_class, ...]` array that
    `fometa.FewShotTasks` samples N-way K-shot episodes from.

    `images` [n, ...] and integer `labels` [n]; `keep`: the labels to keep, in that order
    (default: every label, sorted). Each class keeps its images in their order, all classes
    truncated to the smallest count (`common_count`: a `DataWarning` when they differ).
    """
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{what}: {images.shape[0]} images but {labels.shape[0]} labels")
    keep = sorted(set(labels.tolist())) if keep is None else list(keep)
    members = {int(c): np.flatnonzero(labels == c) for c in keep}
    n = common_count({str(c): len(idx) for c, idx in members.items()}, what)
    return np.stack([images[members[int(c)][:n]] for c in keep])
