"""CIFAR-FS (Bertinetto et al. 2019): CIFAR-100's 100 classes split 64/16/20 for few-shot
learning, as uint8 arrays [classes, 600, 32, 32, 3].

Each class merges CIFAR-100's 500 training and 100 test images (training images first,
each set in its file order). The split is the paper's (its class lists, as distributed
with torchmeta): the 20 test and 16 validation classes below, and the other 64 for
training, each split's classes in the order listed here (training: CIFAR-100's label order).

Sources, in order: `data_dir`, or ``$FOMETA_DATA_DIR`` (a folder holding CIFAR-100's
python version, ``train``, ``test`` and ``meta`` pickles, directly or in a
``cifar-100-python/`` subfolder, as https://www.cs.toronto.edu/~kriz/cifar.html
distributes it); else, if ``tensorflow_datasets`` is installed, its ``cifar100``. Decoded
arrays are cached like the other datasets'.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np

from fometa.data import cache
from fometa.data.classes import classes_from_labels
from fometa.data.paths import PathLike, cache_root, find_dataset_dir
from fometa.errors import DataError, one_line

PREPROCESS_VERSION = 1
PARTS = ("train", "test", "meta")
TEST = ("whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe",
        "leopard", "plain", "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman",
        "bicycle", "pickup_truck", "rocket")
VAL = ("beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly",
       "sea", "camel", "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor")
_EXPECTED = "CIFAR-100's python version: the train, test and meta pickles of cifar-100-python"


def _looks_like_cifar100(folder: Path) -> bool:
    return all((folder / p).is_file() for p in PARTS)


def load_cifar_fs(data_dir: PathLike | None = None, *,
                  cache_dir: PathLike | None = None) -> dict[str, np.ndarray]:
    """CIFAR-FS's splits: {"train": uint8 [64, 600, 32, 32, 3], "val": [16, ...],
    "test": [20, ...]} (see the module docstring)."""
    images, labels, names = _load_cifar100(data_dir, cache_dir)
    index = {name: i for i, name in enumerate(names)}
    missing = sorted(set(TEST + VAL) - set(index))
    if missing:
        raise DataError(f"CIFAR-100's label names lack the CIFAR-FS classes {missing}")
    held = {index[n] for n in TEST + VAL}
    splits = {"train": [i for i in range(len(names)) if i not in held],
              "val": [index[n] for n in VAL], "test": [index[n] for n in TEST]}
    return {split: classes_from_labels(images, labels, keep, f"CIFAR-FS {split} split")
            for split, keep in splits.items()}


def _load_cifar100(data_dir, cache_dir) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every CIFAR-100 image (training then test), uint8 [60000, 32, 32, 3], its fine label
    [60000] and the label names."""
    folder = find_dataset_dir("cifar-fs", data_dir, _looks_like_cifar100, _EXPECTED)
    if folder is None:
        if importlib.util.find_spec("tensorflow_datasets") is None:
            raise DataError("no CIFAR-100 data: pass --data-dir (or set FOMETA_DATA_DIR to) a "
                            "folder holding cifar-100-python's train, test and meta files, or "
                            "install the tfds extra (pip install 'fometa[tfds]')")
        build, sources = _from_tfds, "tensorflow-datasets cifar100"
    else:
        build = lambda: _from_pickles(folder)  # noqa: E731
        sources = [cache.file_fingerprint(folder / p, p) for p in PARTS]
    description = {"dataset": "cifar-100", "version": PREPROCESS_VERSION, "sources": sources}

    def arrays():
        images, labels, names = build()
        return {"images": images, "labels": labels, "names": np.array(names, dtype=str)}

    out = cache.cached(cache_root(cache_dir), "cifar-100", description,
                       ("images", "labels", "names"), arrays)
    return out["images"], out["labels"], [str(n) for n in out["names"]]


def _unpickle(path: Path) -> dict:
    """CIFAR-100's pickled dict at `path` (a damaged pickle can raise any exception while it
    loads: each is a one-line DataError, as is a pickle that is not a dict)."""
    try:
        with open(path, "rb") as f:
            out = pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - unpickling runs the file's opcodes
        raise DataError(f"cannot read {path} ({one_line(e)}): expected CIFAR-100's python "
                        "pickle; download cifar-100-python again") from e
    if not isinstance(out, dict):
        raise DataError(f"{path} holds a {type(out).__name__}, not CIFAR-100's pickled dict; "
                        "download cifar-100-python again")
    return out


def _from_pickles(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        names = list(_unpickle(folder / "meta")["fine_label_names"])
    except (KeyError, TypeError) as e:
        raise DataError(f"{folder / 'meta'} is not CIFAR-100's meta pickle (no "
                        "fine_label_names)") from e
    images, labels = [], []
    for part in ("train", "test"):
        d = _unpickle(folder / part)
        try:
            images.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32)
                          .transpose(0, 2, 3, 1))
            labels.append(np.asarray(d["fine_labels"], np.int64))
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"{folder / part} is not CIFAR-100's {part} pickle "
                            f"({one_line(e)})") from e
    return np.concatenate(images), np.concatenate(labels), names


def _from_tfds() -> tuple[np.ndarray, np.ndarray, list[str]]:
    import tensorflow_datasets as tfds  # lazy: TensorFlow is optional and slow to import

    try:
        builder = tfds.builder("cifar100")
        builder.download_and_prepare()
        names = list(builder.info.features["label"].names)
        images, labels = [], []
        for split in ("train", "test"):
            data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
            images.append(np.asarray(data["image"], np.uint8))
            labels.append(np.asarray(data["label"], np.int64))
    except Exception as e:  # noqa: BLE001 - anything from TF/tfds (no network, quota, ...)
        raise DataError(f"tensorflow-datasets could not provide cifar100 "
                        f"({type(e).__name__}: {one_line(e)})") from e
    return np.concatenate(images), np.concatenate(labels), names
