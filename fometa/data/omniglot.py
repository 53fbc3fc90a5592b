"""Omniglot (Lake, Salakhutdinov and Tenenbaum 2015) as uint8 arrays, preprocessed as the papers do.

All 1623 characters of ``images_background`` (964) and ``images_evaluation`` (659)
are merged, ordered by alphabet name then character folder name (the order of
``read_dataset`` in openai/supervised-reptile, which lists one folder holding all
50 alphabets with ``sorted(os.listdir(...))``), and each character's 20 drawings
are ordered by file name. Every 105x105 PNG is resized to 28x28 with
``img.resize((28, 28), resample=Image.LANCZOS)``. The PNGs are 1-bit (PIL mode
"1") and Pillow resamples mode "1" (and "P") images with NEAREST whatever filter
is asked for, so this is a nearest-neighbour subsample: output pixel ``i`` is
source pixel ``floor((i + 0.5) * 105 / 28)``, i.e. rows/columns 1, 5, 9, 13, 16,
... 103. That is also what the Reptile code's ``Image.open(f).resize((28, 28))``
(default filter) and MAML's ``resize_images.py`` (LANCZOS) produce; we checked
Pillow 9.3 and 13.0 give identical pixels. The result is stored as uint8 0/255
(``np.array`` of a mode "1" image is boolean): ``value / 255`` gives the paper's
float inputs, 1.0 for the white background and 0.0 for the black strokes. Images
that are not 1-bit (e.g. the RGB images of tensorflow-datasets) are first
thresholded at 128 to 1-bit, without dithering, so they give the same pixels.

Rotations are *not* applied here: the trainer augments on the device at sampling
time, class ``c * 4 + r`` being character ``c`` rotated by ``r * 90`` degrees
(Reptile rotates training characters only; MAML rotates every class).

Splits are deterministic permutations of the merged, sorted character list:

* ``"paper"`` (Reptile, the default): ``random.Random(seed).shuffle`` with seed 0,
  the first 1200 characters for ``"train"``, the next 423 for ``"test"``.
  ``run_omniglot.py`` does ``random.seed(0)`` then ``random.shuffle`` on the same
  list, so the split equals the paper's.
* ``"maml"``: seed 1, 1100 ``"train"``, the next 100 ``"val"``, the next 423
  ``"test"``, the sizes and slice positions of cbfinn/maml's ``data_generator.py``
  (whose own list comes from unsorted ``os.listdir``, so its exact split depends
  on the file system and cannot be reproduced). Note that MAML's ``--test_set``
  evaluates on the 100-character slice and validates on the 423-character one;
  here they are named ``"val"`` and ``"test"`` by position.

Sources, in order: `data_dir`, or ``$FOMETA_DATA_DIR`` (a folder holding the
official ``images_background.zip`` and ``images_evaluation.zip``, or their
extracted trees ``images_background/<Alphabet>/characterNN/*.png``, directly or
in an ``omniglot/`` subfolder; the ``_small1``/``_small2`` zips are ignored;
checksums are not verified); else, if ``tensorflow_datasets`` is installed
(``pip install 'fometa[tfds]'``), its ``omniglot`` builder (which downloads),
merging its ``train`` and ``test`` splits. Decoded arrays are cached (see
`fometa.data.cache`), keyed on the source files, so decoding happens once.
"""

from __future__ import annotations

import importlib.util
import io
import os
import random
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fometa.data import cache
from fometa.data.classes import common_count
from fometa.errors import DataError, one_line
from fometa.data.paths import PathLike, cache_root, find_dataset_dir

#: Bump when the pixels or the character order produced from the same files change.
PREPROCESS_VERSION = 1
IMAGE_SIZE = 28
OFFICIAL_SIZE = 105  # the official drawings' side, in pixels
PARTS = ("images_background", "images_evaluation")
NUM_CHARACTERS = 1623


@dataclass(frozen=True)
class SplitSpec:
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    seed: int
    rotated: tuple[str, ...]  # the parts whose classes are augmented with rotations


SPLITS: dict[str, SplitSpec] = {
    # Reptile's code rotates the training characters only; MAML's rotates every class.
    "paper": SplitSpec(("train", "test"), (1200, 423), 0, rotated=("train",)),
    "maml": SplitSpec(("train", "val", "test"), (1100, 100, 423), 1, rotated=("train", "val", "test")),
}


def is_rotated(split: str, part: str) -> bool:
    """Whether part `part` ("train", "val", "test") of Omniglot split `split` ("paper",
    "maml") is augmented with rotations: class ``c * 4 + r`` is class ``c`` rotated by
    ``r * 90`` degrees (done on the device at sampling time, `fometa.tasks.classification`)."""
    return part in _split_spec(split, None, None).rotated

_EXPECTED = (
    "the official Omniglot archives images_background.zip and images_evaluation.zip "
    "(or their extracted folders images_background/ and images_evaluation/)"
)
_NO_SOURCE = (
    "no Omniglot data: pass --data-dir (or set FOMETA_DATA_DIR to) a folder holding "
    "images_background.zip and images_evaluation.zip from "
    "https://github.com/brendenlake/omniglot/tree/master/python, "
    "or install the tfds extra (pip install 'fometa[tfds]') to download it with tensorflow-datasets"
)


# --------------------------------------------------------------------------- public API


def load_omniglot(
    data_dir: PathLike | None = None,
    *,
    split: str = "paper",
    seed: int | None = None,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    cache_dir: PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Omniglot characters split into meta-train/(val)/test sets of uint8 arrays.

    Args:
      data_dir: folder with the official zips or their extracted trees (see the
        module docstring); None: ``$FOMETA_DATA_DIR``, else tensorflow-datasets.
      split: ``"paper"`` (train/test, 1200/423, seed 0: Reptile's split) or
        ``"maml"`` (train/val/test, 1100/100/423, seed 1).
      seed: seed of ``random.Random(seed).shuffle`` of the sorted character list;
        None uses the split's own (0 for "paper", 1 for "maml").
      sizes: characters per split, a sequence in the split's order or a mapping
        from split name; None uses the defaults above. Characters past their sum
        are left out; a sum above the number of characters is a `DataError`.
      cache_dir: cache folder; None: ``$FOMETA_CACHE_DIR``, else ``~/.cache/fometa``.

    Returns:
      ``{"train": uint8 [n_train, 20, 28, 28], ("val": ...,) "test": ...}`` with
      values 0 (stroke) and 255 (background); divide by 255 for the model input.
      Rotations are not applied (see the module docstring).
    """
    spec = _split_spec(split, seed, sizes)
    images, _ = load_omniglot_characters(data_dir, cache_dir=cache_dir)
    if sizes is None and len(images) != NUM_CHARACTERS:
        # the papers' splits are a shuffle of the official characters: of other data they
        # would be other characters, or the same in training and test, silently
        raise DataError(f"Omniglot split {split!r} is the papers' split of the official "
                        f"{NUM_CHARACTERS} characters; the data holds {len(images)} (pass sizes= "
                        "for other data)")
    return {name: images[idx] for name, idx in _split(len(images), spec, split).items()}


def split_indices(
    num_characters: int,
    split: str = "paper",
    seed: int | None = None,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Indices into the sorted character list for each split (as `load_omniglot` uses them)."""
    return _split(num_characters, _split_spec(split, seed, sizes), split)


def load_omniglot_characters(
    data_dir: PathLike | None = None, *, cache_dir: PathLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """All characters, unsplit: (uint8 [n_characters, n_drawings, 28, 28], names).

    Names are ``"<Alphabet>/characterNN"`` in the array's order (sorted). With the
    official data this is [1623, 20, 28, 28]. Sources and caching as in `load_omniglot`.
    """
    folder = find_dataset_dir("omniglot", data_dir, _looks_like_omniglot, _EXPECTED)
    if folder is None:
        if _tfds_available():
            return _load_from_tfds(cache_dir)
        raise DataError(_NO_SOURCE)
    sources = [_find_part(folder, part) for part in PARTS]
    description = {
        "dataset": "omniglot",
        "version": PREPROCESS_VERSION,
        "size": IMAGE_SIZE,
        "sources": [s.fingerprint() for s in sources],
    }
    return _cached(cache_dir, description, lambda: _decode_sources(sources))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one Omniglot image file to uint8 [28, 28] in {0, 255} (see the module docstring).

    `name` identifies the image in error messages.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _preprocess(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode the Omniglot image {name} ({one_line(e)})") from e


# --------------------------------------------------------------------------- preprocessing


def _preprocess(img: Image.Image) -> np.ndarray:
    """1-bit image -> 28x28 uint8 0/255, exactly as the papers' PIL calls. Only the
    official drawings' form is taken: 105x105 without transparency (a drawing of another
    size would be stretched, a transparent background turned to strokes)."""
    if img.size != (OFFICIAL_SIZE, OFFICIAL_SIZE) or "A" in img.getbands() or (
            "transparency" in img.info):
        raise ValueError(f"a {img.size[0]}x{img.size[1]} {img.mode} image; Omniglot drawings "
                         f"are {OFFICIAL_SIZE}x{OFFICIAL_SIZE} without transparency")
    if img.mode != "1":
        img = img.convert("L").convert("1", dither=Image.Dither.NONE)
    # Pillow resamples mode "1" with NEAREST whatever filter is asked for; we make the
    # same call as the papers' code so the pixels are theirs by construction.
    small = img.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
    return np.array(small, dtype=bool).astype(np.uint8) * np.uint8(255)


# --------------------------------------------------------------------------- splits


def _split_spec(split: str, seed, sizes) -> SplitSpec:
    if split not in SPLITS:
        raise DataError(f"unknown Omniglot split {split!r}: expected one of {', '.join(map(repr, SPLITS))}")
    default = SPLITS[split]
    if seed is None:
        seed = default.seed
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"Omniglot split seed must be an integer, got {seed!r}")
    if sizes is None:
        sizes = default.sizes
    elif isinstance(sizes, Mapping):
        if set(sizes) != set(default.names):
            raise DataError(
                f"Omniglot split {split!r} sizes must name exactly {', '.join(default.names)}; got {', '.join(map(str, sizes))}"
            )
        sizes = tuple(sizes[n] for n in default.names)
    else:
        sizes = tuple(sizes)
        if len(sizes) != len(default.names):
            raise DataError(
                f"Omniglot split {split!r} takes {len(default.names)} sizes ({', '.join(default.names)}), got {sizes!r}"
            )
    for n, s in zip(default.names, sizes):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise DataError(f"Omniglot split size for {n!r} must be a non-negative integer, got {s!r}")
    return SplitSpec(default.names, tuple(int(s) for s in sizes), int(seed), default.rotated)


def _split(n: int, spec: SplitSpec, split: str) -> dict[str, np.ndarray]:
    need = sum(spec.sizes)
    if need > n:
        raise DataError(
            f"Omniglot split {split!r} needs {'+'.join(map(str, spec.sizes))}={need} characters "
            f"but the data holds {n}"
        )
    order = list(range(n))
    random.Random(spec.seed).shuffle(order)  # == random.seed(seed); random.shuffle(order)
    out, start = {}, 0
    for name, size in zip(spec.names, spec.sizes):
        out[name] = np.array(order[start:start + size], dtype=np.int64)
        start += size
    return out


# --------------------------------------------------------------------------- local files


def _looks_like_omniglot(folder: Path) -> bool:
    names = [*PARTS, "images_background_small1", "images_background_small2"]
    return any((folder / n).is_dir() or (folder / f"{n}.zip").is_file() for n in names)


class _Source:
    """One of the two official parts, as a zip file or an extracted folder."""

    def __init__(self, part: str, path: Path, is_zip: bool):
        self.part, self.path, self.is_zip = part, path, is_zip
        self._zip: zipfile.ZipFile | None = None

    def fingerprint(self) -> list:
        try:
            if self.is_zip:
                return [cache.file_fingerprint(self.path, self.path.name)]
            base, prints = str(self.path), []
            for rel in self._walk():  # plain strings: pathlib would triple the time of a cached load
                st = os.stat(os.path.join(base, rel))
                prints.append([f"{self.part}/{rel}", st.st_size, st.st_mtime_ns])
            return prints
        except OSError as e:
            raise DataError(f"cannot read {self.path} ({one_line(e)})") from e

    def _walk(self) -> list[str]:
        """Paths (relative, with "/") of the PNG files under the extracted folder, sorted."""
        files, base = [], str(self.path)
        for root, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__MACOSX")))
            rel = os.path.relpath(root, base).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            files.extend(prefix + n for n in sorted(names) if n.lower().endswith(".png"))
        return files

    def entries(self) -> list[tuple[str, str, str, str]]:
        """(alphabet, character, file name, locator) of every drawing."""
        if self.is_zip:
            paths = [i.filename for i in self._open().infolist() if not i.is_dir()]
        else:
            paths = self._walk()
        out = []
        for p in paths:
            parts = p.split("/")
            if len(parts) < 3 or any(s.startswith(("__MACOSX", ".")) for s in parts):
                continue
            alphabet, character, fname = parts[-3:]
            if character.startswith("character") and fname.lower().endswith(".png"):
                out.append((alphabet, character, fname, p))
        if not out:
            layout = "images_background/<Alphabet>/characterNN/*.png"
            raise DataError(f"{self.path} holds no Omniglot drawings: expected entries like {layout}")
        return out

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except PermissionError as e:
                raise DataError(f"cannot read {self.path} ({e.strerror}): give this user read "
                                "permission on it") from e
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise DataError(
                    f"{self.path} is not a readable zip archive ({one_line(e)}): it may be truncated or "
                    f"corrupt; download {self.part}.zip again"
                ) from e
        return self._zip

    def read(self, locator: str) -> bytes:
        if not self.is_zip:
            path = self.path / locator
            try:
                return path.read_bytes()
            except OSError as e:
                raise DataError(f"cannot read {path} ({one_line(e)})") from e
        try:
            return self._open().read(locator)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError) as e:  # RuntimeError: an encrypted entry
            raise DataError(
                f"{self.path}: cannot read {locator} ({one_line(e)}): the archive is corrupt or "
                f"truncated; download {self.part}.zip again"
            ) from e

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def _find_part(folder: Path, part: str) -> _Source:
    zip_path, dir_path = folder / f"{part}.zip", folder / part
    if zip_path.is_file():
        return _Source(part, zip_path, is_zip=True)
    if dir_path.is_dir():
        return _Source(part, dir_path, is_zip=False)
    raise DataError(
        f"missing {folder / (part + '.zip')} (or its extracted folder {folder / part}/): Omniglot needs "
        f"both images_background.zip and images_evaluation.zip from "
        f"https://github.com/brendenlake/omniglot/tree/master/python"
    )


def _decode_sources(sources: list[_Source]) -> tuple[np.ndarray, list[str]]:
    try:
        groups: dict[tuple[str, str], list[tuple[str, _Source, str]]] = {}
        owner: dict[tuple[str, str], str] = {}
        for src in sources:
            for alphabet, character, fname, locator in src.entries():
                key = (alphabet, character)
                if owner.setdefault(key, src.part) != src.part:
                    raise DataError(
                        f"Omniglot character {alphabet}/{character} appears in both "
                        f"{owner[key]} and {src.part}"
                    )
                groups.setdefault(key, []).append((fname, src, locator))
        keys = sorted(groups)
        names = [f"{a}/{c}" for a, c in keys]
        per_class = common_count({n: len(groups[k]) for n, k in zip(names, keys)}, "Omniglot")
        out = np.empty((len(keys), per_class, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for i, key in enumerate(keys):
            for j, (_, src, locator) in enumerate(sorted(groups[key], key=lambda g: g[0])[:per_class]):
                where = f"{src.path}:{locator}" if src.is_zip else str(src.path / locator)
                out[i, j] = decode_image(src.read(locator), where)
        return out, names
    finally:
        for src in sources:
            src.close()


# --------------------------------------------------------------------------- cache


def _cached(cache_dir, description: dict, build) -> tuple[np.ndarray, list[str]]:
    def arrays():
        images, names = build()
        return {"images": images, "names": np.array(names, dtype=str)}

    out = cache.cached(cache_root(cache_dir), "omniglot", description, ("images", "names"), arrays)
    return out["images"], [str(n) for n in out["names"]]


# --------------------------------------------------------------------------- tensorflow-datasets


def _tfds_available() -> bool:
    if "tensorflow_datasets" in sys.modules:
        return sys.modules["tensorflow_datasets"] is not None
    try:
        return importlib.util.find_spec("tensorflow_datasets") is not None
    except (ImportError, ValueError):
        return False


def _load_from_tfds(cache_dir) -> tuple[np.ndarray, list[str]]:
    description = {
        "dataset": "omniglot",
        "version": PREPROCESS_VERSION,
        "size": IMAGE_SIZE,
        "sources": "tensorflow-datasets omniglot train+test",
    }
    return _cached(cache_dir, description, _decode_tfds)


def _decode_tfds() -> tuple[np.ndarray, list[str]]:
    """Download (via tensorflow-datasets) and preprocess; grouped and ordered as the zip path."""
    import tensorflow_datasets as tfds  # lazy: TensorFlow is optional and slow to import

    try:
        builder = tfds.builder("omniglot")
        builder.download_and_prepare()
        dataset = builder.as_dataset(split="train+test", shuffle_files=False)
        try:
            alphabets = list(builder.info.features["alphabet"].names)
        except (AttributeError, KeyError, TypeError):
            alphabets = []
        groups: dict[tuple[int, int], list[np.ndarray]] = {}
        for ex in tfds.as_numpy(dataset):
            key = (int(ex["alphabet"]), int(ex["alphabet_char_id"]))
            groups.setdefault(key, []).append(_binarize(np.asarray(ex["image"])))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - anything from TF/tfds (no network, quota, ...)
        raise DataError(
            f"tensorflow-datasets could not provide omniglot ({type(e).__name__}: {one_line(e)}); "
            f"pass --data-dir with a folder holding images_background.zip and images_evaluation.zip instead"
        ) from e
    # tfds's alphabet labels index the sorted alphabet names and alphabet_char_id is
    # characterNN - 1, so sorting by (alphabet, char id) is the zip path's order.
    keys = sorted(groups)
    names = [
        f"{alphabets[a] if a < len(alphabets) else f'alphabet{a:02d}'}/character{c + 1:02d}" for a, c in keys
    ]
    per_class = common_count({n: len(groups[k]) for n, k in zip(names, keys)}, "Omniglot (tensorflow-datasets)")
    out = np.empty((len(keys), per_class, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, key in enumerate(keys):
        # tfds does not expose the drawing's file name; order drawings by content so
        # the result does not depend on the order tfds yields examples in.
        drawings = sorted(groups[key], key=lambda a: a.tobytes())[:per_class]
        for j, bits in enumerate(drawings):
            out[i, j] = _preprocess(Image.fromarray(bits).convert("1", dither=Image.Dither.NONE))
    return out, names


def _binarize(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W(, C)] image from tfds -> uint8 [H, W] in {0, 255} (threshold 128 on luminance)."""
    if image.ndim == 3:
        image = image[..., :3] if image.shape[-1] >= 3 else image[..., 0]
    img = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
    return np.array(img.convert("L").convert("1", dither=Image.Dither.NONE), dtype=bool).astype(np.uint8) * np.uint8(255)
