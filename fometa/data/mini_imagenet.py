"""Mini-ImageNet (Vinyals et al. 2016; split of Ravi and Larochelle 2017) as uint8 arrays.

Two layouts are accepted, in `data_dir` or in a ``mini-imagenet/`` (also
``mini-imagenet-sample/``, ``miniimagenet/``, ``miniImagenet/``, ``mini_imagenet/``)
subfolder of it or of ``$FOMETA_DATA_DIR``:

* "images + CSV": ``images/<file>`` with ``train.csv``, ``val.csv`` and
  ``test.csv``, each headed ``filename,label``; a row puts ``images/<filename>``
  in class ``label``.
* class folders: ``train/<class>/<file>``, ``val/<class>/<file>``,
  ``test/<class>/<file>`` (the layout of openai/supervised-reptile and MAML);
  image files end in .jpg, .jpeg or .png (any case); other files are ignored.

When a folder holds both, the CSV layout wins. Every image is converted to RGB
and, when it is not 84x84 already, resized with
``img.resize((84, 84), resample=Image.LANCZOS)`` (as MAML's ``proc_images.py``).
Classes are ordered by name and each class's images by file name.

Uneven classes: every class of a split must contribute the same number of
images to the ``[classes, images, 84, 84, 3]`` array. When they do not, all
classes of that split are truncated to the smallest count (keeping the first
images by file name) and a `DataWarning` names the smallest and the largest
class. The official data has 600 images in every class, so this only happens
with hand-made subsets; a class with no image at all is a `DataError`.

Decoded arrays are cached (see `fometa.data.cache`), keyed on every source file
(CSV files and images: path, size, mtime), so decoding happens once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

from fometa.data import cache
from fometa.data.classes import common_count
from fometa.errors import DataError, one_line
from fometa.data.paths import PathLike, cache_root, find_dataset_dir

#: Bump when the pixels or the order produced from the same files change.
PREPROCESS_VERSION = 1
IMAGE_SIZE = 84
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CSV_HEADER = ("filename", "label")

_LAYOUTS = (
    "one of the accepted Mini-ImageNet layouts: 'images + CSV' (images/ with train.csv, val.csv "
    "and test.csv headed filename,label) or class folders (train/<class>/*.jpg, val/<class>/*.jpg, "
    "test/<class>/*.jpg)"
)

# split -> class -> [(file name, path, path relative to the dataset folder)]; plain strings,
# since pathlib objects for the 60,000 files would dominate the time of a cached load.
_Listing = dict[str, dict[str, list[tuple[str, str, str]]]]


def load_mini_imagenet(
    data_dir: PathLike | None = None, *, cache_dir: PathLike | None = None
) -> dict[str, np.ndarray]:
    """Mini-ImageNet's train/val/test splits as uint8 arrays.

    Args:
      data_dir: folder in one of the layouts of the module docstring (or a root
        holding it as ``mini-imagenet/`` etc.); None: ``$FOMETA_DATA_DIR``.
      cache_dir: cache folder; None: ``$FOMETA_CACHE_DIR``, else ``~/.cache/fometa``.

    Returns:
      ``{"train": uint8 [C, n, 84, 84, 3], "val": ..., "test": ...}`` (RGB; the
      full dataset has C = 64/16/20 and n = 600). Divide by 255 for the model input.
    """
    arrays, _ = load_mini_imagenet_with_classes(data_dir, cache_dir=cache_dir)
    return arrays


def load_mini_imagenet_with_classes(
    data_dir: PathLike | None = None, *, cache_dir: PathLike | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """As `load_mini_imagenet`, plus each split's class names in array order."""
    folder = find_dataset_dir("mini-imagenet", data_dir, lambda d: _layout(d) is not None, _LAYOUTS)
    if folder is None:
        raise DataError(
            "no Mini-ImageNet data: pass --data-dir (or set FOMETA_DATA_DIR to) a folder in "
            + _LAYOUTS
        )
    layout = _layout(folder)
    listing = _check_listing(_list_csv(folder) if layout == "csv" else _list_folders(folder),
                             folder)
    description = {
        "dataset": "mini-imagenet",
        "version": PREPROCESS_VERSION,
        "size": IMAGE_SIZE,
        "layout": layout,
        "sources": _fingerprint(folder, layout, listing),
    }
    def build():
        arrays, classes = _decode(listing, folder)
        return {**arrays, **{f"{s}_classes": np.array(classes[s], dtype=str) for s in SPLITS}}

    names = [*SPLITS, *(f"{s}_classes" for s in SPLITS)]
    out = cache.cached(cache_root(cache_dir), "mini-imagenet", description, names, build)
    return ({s: out[s] for s in SPLITS},
            {s: [str(c) for c in out[f"{s}_classes"]] for s in SPLITS})


def decode_image(path: PathLike) -> np.ndarray:
    """Decode one image file to uint8 [84, 84, 3] RGB (resized with LANCZOS when needed)."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
            rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
        return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode the Mini-ImageNet image {path} ({one_line(e)})") from e


# --------------------------------------------------------------------------- layouts


def _layout(folder: Path) -> str | None:
    if any((folder / f"{s}.csv").is_file() for s in SPLITS) or (folder / "images").is_dir():
        return "csv"
    if any((folder / s).is_dir() for s in SPLITS):
        return "folders"
    return None


def _list_csv(folder: Path) -> _Listing:
    images = folder / "images"
    needs = "the 'images + CSV' layout needs images/, train.csv, val.csv and test.csv"
    for s in SPLITS:
        if not (folder / f"{s}.csv").is_file():
            raise DataError(f"missing {folder / (s + '.csv')}: {needs}")
    if not images.is_dir():
        raise DataError(f"missing the folder {images}/: {needs}")
    return {s: _read_csv(folder / f"{s}.csv", images) for s in SPLITS}


def _read_csv(path: Path, images: Path) -> dict[str, list[tuple[str, str, str]]]:
    classes: dict[str, list[tuple[str, str, str]]] = {}
    base = str(images)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path} ({one_line(e)})") from e
    lines = [(n, row) for n, row in enumerate(rows, start=1) if len(row) > 1 or (row and row[0].strip())]
    if not lines:
        raise DataError(f"{path} is empty: expected the header 'filename,label' and one row per image")
    header = tuple(cell.strip() for cell in lines[0][1])
    if header != CSV_HEADER:
        raise DataError(f"{path}: the header is {','.join(lines[0][1])!r}, expected 'filename,label'")
    for n, row in lines[1:]:
        cells = [cell.strip() for cell in row]
        if len(cells) != 2 or not all(cells):
            raise DataError(f"{path} line {n}: expected 'filename,label', got {','.join(row)!r}")
        fname, label = cells
        classes.setdefault(label, []).append((fname, os.path.join(base, fname), f"images/{fname}"))
    return classes


def _check_listing(listing: _Listing, folder: Path) -> _Listing:
    """`listing` if no class is in two splits and no image is listed twice: a class shared by
    training and test would be evaluated on what was trained on, a repeated image drawn as
    two examples, both silently."""
    seen: dict[str, str] = {}
    for s in SPLITS:
        for c, files in listing[s].items():
            if c in seen:
                raise DataError(f"{folder}: class {c!r} is in both the {seen[c]} and the {s} "
                                "split; the splits' classes must be disjoint")
            seen[c] = s
            rels = [rel for _, _, rel in files]
            if len(set(rels)) != len(rels):
                twice = next(r for r in rels if rels.count(r) > 1)
                raise DataError(f"{folder}: {twice} is listed more than once for class {c!r}")
    return listing


def _list_folders(folder: Path) -> _Listing:
    out: _Listing = {}
    for s in SPLITS:
        split_dir = folder / s
        if not split_dir.is_dir():
            raise DataError(
                f"missing the folder {split_dir}/: the class-folder layout needs train/, val/ and test/, "
                f"each holding <class>/*.jpg"
            )
        classes: dict[str, list[tuple[str, str, str]]] = {}
        with os.scandir(split_dir) as it:
            class_dirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        for c in class_dirs:
            with os.scandir(split_dir / c) as it:
                files = sorted(e.name for e in it
                               if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith("."))
            class_dir = os.path.join(str(split_dir), c)
            classes[c] = [(f, os.path.join(class_dir, f), f"{s}/{c}/{f}") for f in files]
        out[s] = classes
    return out


def _fingerprint(folder: Path, layout: str, listing: _Listing) -> list:
    prints = []
    if layout == "csv":
        prints += [cache.file_fingerprint(folder / f"{s}.csv", f"{s}.csv") for s in SPLITS]
    for s in SPLITS:
        for c in sorted(listing[s]):
            for _, path, rel in listing[s][c]:
                try:
                    st = os.stat(path)
                    prints.append([s, c, rel, st.st_size, st.st_mtime_ns])
                except FileNotFoundError as e:
                    where = f"{s}.csv lists {rel} but" if layout == "csv" else ""
                    raise DataError(f"{where} {path} does not exist".strip()) from e
                except OSError as e:
                    raise DataError(f"cannot read {path} ({one_line(e)})") from e
    return prints


def _decode(listing: _Listing, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    arrays, classes = {}, {}
    for s in SPLITS:
        names = sorted(listing[s])
        counts = {c: len(listing[s][c]) for c in names}
        n = common_count(counts, f"Mini-ImageNet {s} split ({folder})")
        out = np.empty((len(names), n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for i, c in enumerate(names):
            for j, (_, path, _) in enumerate(sorted(listing[s][c], key=lambda t: t[0])[:n]):
                out[i, j] = decode_image(path)
        arrays[s], classes[s] = out, names
    return arrays, classes
