"""Few-shot image classification data: Omniglot, Mini-ImageNet and CIFAR-FS as uint8 arrays.

Everything here runs on the host with numpy and PIL; arrays are returned as
uint8 (``[classes, images_per_class, H, W(, C)]``) and decoded once, then read
from a cache (``$FOMETA_CACHE_DIR``, default ``~/.cache/fometa``). The data
folder is an explicit argument or ``$FOMETA_DATA_DIR``. User-facing problems
raise `DataError`, a `ValueError` with a one-line message.
"""

from __future__ import annotations

from fometa.data.cifar_fs import load_cifar_fs
from fometa.data.classes import classes_from_labels
from fometa.data.mini_imagenet import load_mini_imagenet
from fometa.data.omniglot import SPLITS as OMNIGLOT_SPLITS
from fometa.data.omniglot import is_rotated, load_omniglot
from fometa.data.paths import CACHE_DIR_ENV, DATA_DIR_ENV
from fometa.errors import DataError, DataWarning

LOADERS = {"omniglot": load_omniglot, "mini-imagenet": load_mini_imagenet,
           "cifar-fs": load_cifar_fs}
_ALIASES = {"miniimagenet": "mini-imagenet"}


def load_dataset(name: str, data_dir=None, **kw):
    """Load dataset `name` ("omniglot" or "mini-imagenet"); `kw` go to its loader.

    ``load_dataset("omniglot", d, split="maml")`` is ``load_omniglot(d, split="maml")``;
    ``load_dataset("mini-imagenet", d)`` is ``load_mini_imagenet(d)``.
    """
    key = str(name).strip().lower().replace("_", "-")
    loader = LOADERS.get(_ALIASES.get(key, key))
    if loader is None:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(LOADERS)}")
    return loader(data_dir, **kw)


__all__ = [
    "CACHE_DIR_ENV", "DATA_DIR_ENV", "DataError", "DataWarning", "LOADERS", "OMNIGLOT_SPLITS",
    "classes_from_labels", "is_rotated", "load_cifar_fs", "load_dataset", "load_mini_imagenet",
    "load_omniglot",
]
