"""Few-shot image classification data: Omniglot and Mini-ImageNet as uint8 numpy arrays.

Everything here runs on the host with numpy and PIL; arrays are returned as
uint8 (``[classes, images_per_class, H, W(, C)]``) and decoded once, then read
from a cache (``$FOMETA_CACHE_DIR``, default ``~/.cache/fometa``). The data
folder is an explicit argument or ``$FOMETA_DATA_DIR``. User-facing problems
raise `DataError`, a `ValueError` with a one-line message.
"""

from __future__ import annotations

from fometa.data.errors import DataError, DataWarning
from fometa.data.mini_imagenet import load_mini_imagenet
from fometa.data.omniglot import load_omniglot
from fometa.data.paths import CACHE_DIR_ENV, DATA_DIR_ENV

DATASETS = ("omniglot", "mini-imagenet")
_ALIASES = {"omniglot": "omniglot", "mini-imagenet": "mini-imagenet", "miniimagenet": "mini-imagenet"}


def load_dataset(name: str, data_dir=None, **kw):
    """Load dataset `name` ("omniglot" or "mini-imagenet"); `kw` go to its loader.

    ``load_dataset("omniglot", d, split="maml")`` is ``load_omniglot(d, split="maml")``;
    ``load_dataset("mini-imagenet", d)`` is ``load_mini_imagenet(d)``.
    """
    key = _ALIASES.get(str(name).strip().lower().replace("_", "-"))
    if key is None:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if key == "omniglot":
        return load_omniglot(data_dir, **kw)
    return load_mini_imagenet(data_dir, **kw)


__all__ = [
    "CACHE_DIR_ENV", "DATASETS", "DATA_DIR_ENV", "DataError", "DataWarning", "load_dataset",
    "load_mini_imagenet", "load_omniglot",
]
