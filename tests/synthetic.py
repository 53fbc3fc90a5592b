"""Small synthetic datasets in the official layouts, for tests without the real data."""

from __future__ import annotations

import csv
import io
import random
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _png(bits: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(bits).save(buf, format="PNG")  # bool array -> 1-bit PNG, like the official files
    return buf.getvalue()


def write_omniglot(root: Path, spec, form: str = "zip", parts=None) -> Path:
    """Write the spec as official zips ("zip"), extracted trees ("dir") or one of each ("mixed")."""
    root.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(parts or spec):
        as_zip = form == "zip" or (form == "mixed" and i == 0)
        if as_zip:
            with zipfile.ZipFile(root / f"{part}.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for name, drawings in spec[part].items():
                    for fname, _, data in drawings:
                        z.writestr(f"{part}/{name}/{fname}", data)
        else:
            for name, drawings in spec[part].items():
                (root / part / name).mkdir(parents=True, exist_ok=True)
                for fname, _, data in drawings:
                    (root / part / name / fname).write_bytes(data)
    return root


# split -> class -> number of images; classes are named so that sorted order differs from insertion.
MINI = {"train": {"n03": 4, "n01": 4, "n02": 4}, "val": {"n05": 4, "n04": 4}, "test": {"n07": 4, "n06": 4}}


def _colour(split: str, cls: str, i: int) -> tuple[int, int, int]:
    return (40 * ["train", "val", "test"].index(split) + 20, 20 * int(cls[1:]), 30 * i + 10)


def _solid(colour, size) -> Image.Image:
    return Image.new("RGB", size, colour)


def write_mini(root: Path, layout: str = "csv", sizes=((84, 84), (100, 90)), counts=MINI) -> Path:
    """Solid-colour JPEGs (colour encodes split/class/index), alternating 84x84 and another size."""
    root.mkdir(parents=True, exist_ok=True)
    for split, classes in counts.items():
        rows = []
        for cls, n in classes.items():
            for i in range(n):
                fname = f"{cls}{i:08d}.jpg"
                img = _solid(_colour(split, cls, i), sizes[i % len(sizes)])
                if layout == "csv":
                    (root / "images").mkdir(exist_ok=True)
                    img.save(root / "images" / fname, quality=95)
                    rows.append((fname, cls))
                else:
                    (root / split / cls).mkdir(parents=True, exist_ok=True)
                    img.save(root / split / cls / fname, quality=95)
        if layout == "csv":
            random.Random(0).shuffle(rows)  # the loader sorts
            with open(root / f"{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["filename", "label"])
                w.writerows(rows)
    return root


OMNIGLOT_CHARACTERS = (964, 659)  # images_background, images_evaluation: the official counts


def write_full_omniglot(root: Path, drawings: int) -> Path:
    """The official two zips with all 1623 characters (the paper split's count), each of
    `drawings` random 105x105 1-bit PNGs; the same files for the same `drawings`."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for part, n in zip(("images_background", "images_evaluation"), OMNIGLOT_CHARACTERS):
        with zipfile.ZipFile(root / f"{part}.zip", "w", zipfile.ZIP_STORED) as z:
            for c in range(n):
                for d in range(1, drawings + 1):
                    name = (f"{part}/{part[7:].title()}{c // 40:02d}/character{c % 40 + 1:02d}/"
                            f"{c:04d}_{d:02d}.png")
                    z.writestr(name, _png(rng.random((105, 105)) < 0.8))
    return root
