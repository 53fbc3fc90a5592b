"""Where the datasets and the cache live.

Data: an explicit directory, else the environment variable ``FOMETA_DATA_DIR``.
Either may name the dataset's own folder (the one holding the Omniglot zips, or
Mini-ImageNet's ``images/`` + CSVs) or a root folder holding one subfolder per
dataset (``omniglot/``, and ``mini-imagenet/``, also found as
``mini-imagenet-sample/``, ``miniimagenet/``, ``miniImagenet/`` or
``mini_imagenet/``).

Cache: an explicit directory, else ``FOMETA_CACHE_DIR``, else ``~/.cache/fometa``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fometa.errors import DataError

DATA_DIR_ENV = "FOMETA_DATA_DIR"
CACHE_DIR_ENV = "FOMETA_CACHE_DIR"

#: Subfolder names under a data root where each dataset is looked for, in order.
DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "omniglot": ("omniglot", "Omniglot", "omniglot-py"),
    "mini-imagenet": (
        "mini-imagenet", "mini-imagenet-sample", "miniimagenet", "miniImagenet", "mini_imagenet",
    ),
    "cifar-fs": ("cifar-100-python", "cifar100", "cifar-100"),
}

#: How each dataset is named in messages.
DISPLAY_NAMES = {"omniglot": "Omniglot", "mini-imagenet": "Mini-ImageNet",
                 "cifar-fs": "CIFAR-100"}

PathLike = str | os.PathLike


def data_root(data_dir: PathLike | None) -> tuple[Path, str] | None:
    """The directory to search and how it was given, or None when neither argument nor env var is set.

    The second element names the origin for error messages, e.g. ``"FOMETA_DATA_DIR=/data"``.
    """
    if data_dir is not None and str(data_dir) != "":
        root, origin = Path(data_dir).expanduser(), f"data directory {data_dir}"
    else:
        env = os.environ.get(DATA_DIR_ENV, "")
        if not env:
            return None
        root, origin = Path(env).expanduser(), f"{DATA_DIR_ENV}={env}"
    if not root.exists():
        raise DataError(f"{origin} does not exist")
    if not root.is_dir():
        raise DataError(f"{origin} is not a folder")
    return root, origin


def find_dataset_dir(
    dataset: str,
    data_dir: PathLike | None,
    looks_like: Callable[[Path], bool],
    expected: str,
) -> Path | None:
    """Resolve the folder of `dataset` from `data_dir` or ``FOMETA_DATA_DIR``.

    Returns the root itself when `looks_like(root)`, else the first subfolder named
    as in `DATASET_FOLDERS[dataset]` that looks like the dataset; None when neither
    an argument nor the env var is set. Raises `DataError` (naming `expected`, a
    description of what the folder should hold) when the root holds neither.
    """
    found = data_root(data_dir)
    if found is None:
        return None
    root, origin = found
    if looks_like(root):
        return root
    names = DATASET_FOLDERS[dataset]
    for name in names:
        candidate = root / name
        if candidate.is_dir() and looks_like(candidate):
            return candidate
    subfolders = ", ".join(f"{n}/" for n in names)
    raise DataError(
        f"{origin} holds no {DISPLAY_NAMES[dataset]} data: expected {expected}, "
        f"either in that folder or in a subfolder named one of {subfolders}"
    )


def cache_root(cache_dir: PathLike | None) -> Path:
    """The cache directory: `cache_dir`, else ``FOMETA_CACHE_DIR``, else ``~/.cache/fometa``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fometa"
