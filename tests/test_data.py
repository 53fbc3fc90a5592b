"""Tests of the data layer (fometa.data) on small synthetic archives, plus the real data when present.

The real-data tests run when FOMETA_DATA_DIR is set (e.g. to ../shared/data) and
decode the real Omniglot at most once per test session (session-scoped cache).
"""

from __future__ import annotations

import csv
import io
import os
import random
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fometa.data import DataError, DataWarning, load_dataset, load_mini_imagenet, load_omniglot
from fometa.data import cache as cache_mod
from fometa.data import mini_imagenet as mini_mod
from fometa.data import omniglot as omni_mod
from fometa.data.mini_imagenet import load_mini_imagenet_with_classes
from fometa.data.omniglot import load_omniglot_characters, split_indices
from synthetic import MINI, _colour, _png, _solid, write_mini, write_omniglot

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("data")


REAL_DATA_DIR = os.environ.get("FOMETA_DATA_DIR", "")

# Synthetic Omniglot: alphabets per part -> number of characters. Sorted merged order
# interleaves the parts (Alpha, Beta, Delta, Gamma), which the merge must respect.
BACKGROUND = {"Alpha": 3, "Gamma": 2}
EVALUATION = {"Beta": 2, "Delta": 3}
DRAWINGS = 20
N_CHARS = sum(BACKGROUND.values()) + sum(EVALUATION.values())
# Output pixel i samples source pixel floor((i + 0.5) * 105 / 28): Pillow's NEAREST.
NEAREST_IDX = np.floor((np.arange(28) + 0.5) * 105 / 28).astype(int)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No real data dir, a per-test cache, and no tensorflow_datasets unless a test fakes one."""
    monkeypatch.delenv("FOMETA_DATA_DIR", raising=False)
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# --------------------------------------------------------------------------- synthetic Omniglot


@pytest.fixture(scope="module")
def omniglot_spec():
    """{part: {"<Alphabet>/characterNN": [(file name, bool [105,105] bits, png bytes)]}}."""
    rng = np.random.default_rng(0)
    spec, code = {}, 0
    for part, alphabets in (("images_background", BACKGROUND), ("images_evaluation", EVALUATION)):
        spec[part] = {}
        for alphabet, n in alphabets.items():
            for c in range(1, n + 1):
                code += 1
                drawings = []
                for d in reversed(range(1, DRAWINGS + 1)):  # written out of order on purpose
                    bits = rng.random((105, 105)) < 0.85  # True = white background
                    drawings.append((f"{code:04d}_{d:02d}.png", bits, _png(bits)))
                spec[part][f"{alphabet}/character{c:02d}"] = drawings
    return spec


def expected_characters(spec):
    """(names sorted, uint8 [n, 20, 28, 28]) computed without PIL's resize."""
    chars = {name: d for part in spec.values() for name, d in part.items()}
    names = sorted(chars)
    arrays = np.stack([
        np.stack([bits[np.ix_(NEAREST_IDX, NEAREST_IDX)] for _, bits, _ in sorted(chars[n], key=lambda t: t[0])])
        for n in names
    ]).astype(np.uint8) * 255
    return names, arrays


@pytest.fixture
def omniglot_dir(tmp_path, omniglot_spec):
    return write_omniglot(tmp_path / "omniglot", omniglot_spec)


SMALL = (6, 4)  # the paper split's sizes for the synthetic set


# --------------------------------------------------------------------------- Omniglot: content


def test_omniglot_shapes_pixels_and_merge(omniglot_dir, omniglot_spec, tmp_path):
    data = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=tmp_path / "c")
    assert set(data) == {"train", "test"}
    assert data["train"].shape == (6, DRAWINGS, 28, 28) and data["test"].shape == (4, DRAWINGS, 28, 28)
    assert data["train"].dtype == np.uint8 and data["test"].dtype == np.uint8
    assert set(np.unique(np.concatenate([data["train"], data["test"]]))) == {0, 255}

    names, expected = expected_characters(omniglot_spec)
    images, got_names = load_omniglot_characters(omniglot_dir, cache_dir=tmp_path / "c")
    # both parts merged, ordered by alphabet then character, drawings by file name
    assert got_names == names
    assert got_names[:4] == ["Alpha/character01", "Alpha/character02", "Alpha/character03", "Beta/character01"]
    np.testing.assert_array_equal(images, expected)
    # the split is a permutation of all characters of both archives
    got = {a.tobytes() for a in np.concatenate([data["train"], data["test"]])}
    assert got == {a.tobytes() for a in expected}


def test_omniglot_pixels_match_paper_pil_call(omniglot_spec):
    _, bits, data = omniglot_spec["images_background"]["Alpha/character01"][0]
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "1"
        paper = np.array(img.resize((28, 28))).astype("float32")  # Reptile's call (default filter)
        maml = np.array(img.resize((28, 28), resample=Image.LANCZOS)).astype("float32")  # MAML's call
    ours = omni_mod.decode_image(data, "x.png")
    np.testing.assert_array_equal(ours / 255.0, paper)
    np.testing.assert_array_equal(ours / 255.0, maml)
    np.testing.assert_array_equal(ours, bits[np.ix_(NEAREST_IDX, NEAREST_IDX)].astype(np.uint8) * 255)
    assert ours[0, 0] in (0, 255)


def test_omniglot_non_1bit_images_are_thresholded():
    rng = np.random.default_rng(1)
    bits = rng.random((105, 105)) < 0.8
    rgb = np.repeat(bits[..., None].astype(np.uint8) * 255, 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    np.testing.assert_array_equal(omni_mod.decode_image(buf.getvalue(), "rgb.png"), omni_mod.decode_image(_png(bits), "1.png"))


@pytest.mark.parametrize("form", ["dir", "mixed"])
def test_omniglot_extracted_tree_equals_zip(tmp_path, omniglot_spec, form):
    a = load_omniglot(write_omniglot(tmp_path / "z", omniglot_spec), sizes=SMALL, cache_dir=tmp_path / "c1")
    b = load_omniglot(write_omniglot(tmp_path / form, omniglot_spec, form), sizes=SMALL, cache_dir=tmp_path / "c2")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_omniglot_small_zips_are_ignored(omniglot_dir, omniglot_spec, tmp_path):
    before = load_omniglot_characters(omniglot_dir, cache_dir=tmp_path / "c1")[0]
    with zipfile.ZipFile(omniglot_dir / "images_background_small1.zip", "w") as z:
        z.writestr("images_background_small1/Zeta/character01/9999_01.png", _png(np.ones((105, 105), bool)))
    after = load_omniglot_characters(omniglot_dir, cache_dir=tmp_path / "c2")[0]
    np.testing.assert_array_equal(before, after)


def test_data_dir_resolution(tmp_path, omniglot_spec, monkeypatch):
    root = tmp_path / "root"
    write_omniglot(root / "omniglot", omniglot_spec)
    direct = load_omniglot(root / "omniglot", sizes=SMALL, cache_dir=tmp_path / "c")
    via_root = load_omniglot(root, sizes=SMALL, cache_dir=tmp_path / "c")
    via_str = load_omniglot(str(root), sizes=SMALL, cache_dir=tmp_path / "c")
    monkeypatch.setenv("FOMETA_DATA_DIR", str(root))
    via_env = load_omniglot(sizes=SMALL, cache_dir=tmp_path / "c")
    for other in (via_root, via_str, via_env):
        np.testing.assert_array_equal(direct["train"], other["train"])


def test_cache_dir_resolution(omniglot_dir, tmp_path, monkeypatch):
    load_omniglot(omniglot_dir, sizes=SMALL)  # FOMETA_CACHE_DIR (set by the autouse fixture)
    assert len(list((tmp_path / "env-cache").glob("omniglot-*.npz"))) == 1
    monkeypatch.delenv("FOMETA_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_omniglot(omniglot_dir, sizes=SMALL)
    assert len(list((tmp_path / "home" / ".cache" / "fometa").glob("omniglot-*.npz"))) == 1


# --------------------------------------------------------------------------- Omniglot: splits


def test_split_is_deterministic_and_sized(omniglot_dir, tmp_path):
    c = tmp_path / "c"
    a = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    b = load_omniglot(omniglot_dir, sizes=SMALL, seed=0, cache_dir=c)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    other = load_omniglot(omniglot_dir, sizes=SMALL, seed=5, cache_dir=c)
    assert not np.array_equal(a["train"], other["train"])

    smaller = load_omniglot(omniglot_dir, sizes=(3, 2), cache_dir=c)
    assert smaller["train"].shape[0] == 3 and smaller["test"].shape[0] == 2

    maml = load_omniglot(omniglot_dir, split="maml", sizes={"train": 5, "val": 2, "test": 3}, cache_dir=c)
    assert [maml[k].shape[0] for k in ("train", "val", "test")] == [5, 2, 3]
    trio = np.concatenate([maml["train"], maml["val"], maml["test"]])
    assert len({x.tobytes() for x in trio}) == N_CHARS  # disjoint and complete


def test_paper_split_mirrors_global_random_shuffle(omniglot_dir, tmp_path):
    """The paper does random.seed(0); random.shuffle(sorted characters); train = first 1200."""
    images, names = load_omniglot_characters(omniglot_dir, cache_dir=tmp_path / "c")
    state = random.getstate()
    try:
        random.seed(0)
        shuffled = list(names)
        random.shuffle(shuffled)
        random.seed(1)
        maml_order = list(names)
        random.shuffle(maml_order)
    finally:
        random.setstate(state)
    data = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(data["train"], images[[names.index(n) for n in shuffled[:6]]])
    np.testing.assert_array_equal(data["test"], images[[names.index(n) for n in shuffled[6:]]])
    maml = load_omniglot(omniglot_dir, split="maml", sizes=(5, 2, 3), cache_dir=tmp_path / "c")  # seed 1
    np.testing.assert_array_equal(maml["val"], images[[names.index(n) for n in maml_order[5:7]]])


def test_default_split_sizes():
    paper = split_indices(1623)
    assert [len(paper[k]) for k in ("train", "test")] == [1200, 423]
    maml = split_indices(1623, "maml")
    assert [len(maml[k]) for k in ("train", "val", "test")] == [1100, 100, 423]
    assert sorted(np.concatenate(list(maml.values())).tolist()) == list(range(1623))
    expected = list(range(1623))
    random.Random(0).shuffle(expected)
    assert paper["train"].tolist() == expected[:1200]


def test_split_errors(omniglot_dir, tmp_path):
    c = tmp_path / "c"
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, cache_dir=c)  # defaults need 1623 characters
    assert "official 1623 characters; the data holds 10" in one_line_error(e)
    with pytest.raises(DataError) as e:  # other data takes sizes; too many are refused
        load_omniglot(omniglot_dir, sizes=(8, 3), cache_dir=c)
    assert "8+3=11" in one_line_error(e) and "holds 10" in one_line_error(e)
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, split="vinyals", cache_dir=c)
    assert "'vinyals'" in one_line_error(e) and "'paper'" in one_line_error(e)
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, split="maml", sizes=(5, 5), cache_dir=c)
    assert "train, val, test" in one_line_error(e)
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, sizes=(-1, 2), cache_dir=c)
    assert "-1" in one_line_error(e)


# --------------------------------------------------------------------------- Omniglot: cache


def _boom(*args, **kwargs):
    raise AssertionError("decoded although the cache should have been used")


def test_cache_reuse_skips_decoding(omniglot_dir, tmp_path, monkeypatch):
    c = tmp_path / "c"
    first = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    entries = list(c.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"
    monkeypatch.setattr(omni_mod, "decode_image", _boom)
    second = load_omniglot(omniglot_dir, split="maml", sizes=(5, 2, 3), cache_dir=c)  # split params: no re-decode
    third = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    for k in first:
        np.testing.assert_array_equal(first[k], third[k])
    assert second["train"].shape == (5, DRAWINGS, 28, 28)
    assert list(c.iterdir()) == entries
    # a changed source file (new mtime) is a new key: it must decode again
    zip_path = omniglot_dir / "images_evaluation.zip"
    st = zip_path.stat()
    os.utime(zip_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded although"):
        load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)


def test_failing_decode_leaves_no_cache_file(omniglot_dir, tmp_path, monkeypatch):
    real, calls = omni_mod.decode_image, []

    def flaky(data, name):
        calls.append(name)
        if len(calls) == 37:
            raise DataError(f"cannot decode the Omniglot image {name}")
        return real(data, name)

    monkeypatch.setattr(omni_mod, "decode_image", flaky)
    c = tmp_path / "c"
    with pytest.raises(DataError):
        load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    assert not c.exists() or list(c.iterdir()) == []
    monkeypatch.setattr(omni_mod, "decode_image", real)
    load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    assert len(list(c.glob("omniglot-*.npz"))) == 1


def test_failing_cache_write_is_atomic(omniglot_dir, tmp_path, monkeypatch):
    def half_then_fail(f, arrays):
        f.write(b"PK\x03\x04 half an npz")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_npz", half_then_fail)
    c = tmp_path / "c"
    with pytest.warns(DataWarning, match="could not write the cache entry"):
        data = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    assert data["train"].shape == (6, DRAWINGS, 28, 28)
    assert list(c.iterdir()) == []  # neither a final entry nor a temp file


def test_corrupt_cache_entry_is_rebuilt(omniglot_dir, tmp_path):
    c = tmp_path / "c"
    first = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    (entry,) = c.iterdir()
    entry.write_bytes(entry.read_bytes()[:1000])
    with pytest.warns(DataWarning, match="unreadable cache entry"):
        again = load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)
    np.testing.assert_array_equal(first["train"], again["train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=c)  # rebuilt entry reads back


# --------------------------------------------------------------------------- Omniglot: errors


def test_missing_archive(tmp_path, omniglot_spec):
    d = write_omniglot(tmp_path / "om", omniglot_spec, parts=["images_background"])
    with pytest.raises(DataError) as e:
        load_omniglot(d, sizes=SMALL, cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert str(d / "images_evaluation.zip") in msg and "images_background.zip" in msg


def test_truncated_zip(omniglot_dir, tmp_path):
    z = omniglot_dir / "images_evaluation.zip"
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert str(z) in msg and "truncated or corrupt" in msg


def test_corrupt_zip_member(omniglot_dir, tmp_path):
    z = omniglot_dir / "images_background.zip"
    with zipfile.ZipFile(z) as zf:
        info = zf.infolist()[5]
    raw = bytearray(z.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 10, start + 30):
        raw[i] ^= 0xFF
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_omniglot(omniglot_dir, sizes=SMALL, cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert str(z) in msg and info.filename in msg


def test_undecodable_image_is_named(tmp_path, omniglot_spec):
    d = write_omniglot(tmp_path / "om", omniglot_spec, form="dir")
    bad = d / "images_evaluation" / "Delta" / "character02" / "0009_07.png"
    assert bad.exists()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DataError) as e:
        load_omniglot(d, sizes=SMALL, cache_dir=tmp_path / "c")
    assert str(bad) in one_line_error(e) and "cannot decode" in one_line_error(e)


def test_undecodable_zip_member_is_named(tmp_path, omniglot_spec):
    d = write_omniglot(tmp_path / "om", omniglot_spec)
    member = "images_background/Alpha/character02/0002_13.png"
    with zipfile.ZipFile(d / "images_background.zip") as z:
        entries = {n: z.read(n) for n in z.namelist()}
    assert member in entries
    entries[member] = b"garbage"
    with zipfile.ZipFile(d / "images_background.zip", "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    with pytest.raises(DataError) as e:
        load_omniglot(d, sizes=SMALL, cache_dir=tmp_path / "c")
    assert f"images_background.zip:{member}" in one_line_error(e)


def test_folder_in_neither_layout(tmp_path):
    d = tmp_path / "empty"
    (d / "stuff").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        load_omniglot(d, cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert str(d) in msg and "images_background.zip" in msg and "images_evaluation.zip" in msg and "omniglot/" in msg
    with pytest.raises(DataError) as e:
        load_omniglot(tmp_path / "nope", cache_dir=tmp_path / "c")
    assert "does not exist" in one_line_error(e)


def test_zip_without_drawings(tmp_path, omniglot_spec):
    d = write_omniglot(tmp_path / "om", omniglot_spec, parts=["images_evaluation"])
    with zipfile.ZipFile(d / "images_background.zip", "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError) as e:
        load_omniglot(d, sizes=SMALL, cache_dir=tmp_path / "c")
    assert "images_background.zip holds no Omniglot drawings" in one_line_error(e)


def test_no_source_at_all(tmp_path):
    with pytest.raises(DataError) as e:
        load_omniglot(cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert "--data-dir" in msg and "images_background.zip" in msg and "tfds" in msg


def test_env_dir_without_omniglot(tmp_path, monkeypatch):
    (tmp_path / "root" / "mini-imagenet").mkdir(parents=True)
    monkeypatch.setenv("FOMETA_DATA_DIR", str(tmp_path / "root"))
    with pytest.raises(DataError) as e:
        load_omniglot(cache_dir=tmp_path / "c")
    assert f"FOMETA_DATA_DIR={tmp_path / 'root'}" in one_line_error(e)


def test_uneven_characters_are_truncated_with_warning(tmp_path, omniglot_spec):
    d = write_omniglot(tmp_path / "om", omniglot_spec, form="dir")
    (d / "images_background" / "Gamma" / "character01" / "0004_20.png").unlink()
    with pytest.warns(DataWarning, match="Gamma/character01: 19"):
        images, _ = load_omniglot_characters(d, cache_dir=tmp_path / "c")
    assert images.shape == (N_CHARS, DRAWINGS - 1, 28, 28)


# --------------------------------------------------------------------------- Omniglot: tensorflow-datasets


class _FakeTfds(types.ModuleType):
    """Stands in for tensorflow_datasets: the omniglot builder's features, as numpy examples."""

    def __init__(self, spec, fail=None):
        super().__init__("tensorflow_datasets")
        alphabets = sorted({name.split("/")[0] for part in spec.values() for name in part})
        self.calls, self.fail, examples = [], fail, []
        label = 0
        for part in spec.values():
            for name, drawings in part.items():
                alphabet, character = name.split("/")
                for _, bits, _ in drawings:
                    examples.append({
                        "image": np.repeat(bits[..., None].astype(np.uint8) * 255, 3, axis=2),
                        "alphabet": np.int64(alphabets.index(alphabet)),
                        "alphabet_char_id": np.int64(int(character[len("character"):]) - 1),
                        "label": np.int64(label),
                    })
                label += 1
        random.Random(3).shuffle(examples)  # tfds yields in its own order
        self.examples = examples
        self.alphabet_names = alphabets

    def builder(self, name, **kw):
        self.calls.append(("builder", name))
        fake = self

        class Builder:
            info = types.SimpleNamespace(features={"alphabet": types.SimpleNamespace(names=fake.alphabet_names)})

            def download_and_prepare(self):
                fake.calls.append(("download_and_prepare",))
                if fake.fail:
                    raise fake.fail

            def as_dataset(self, split, shuffle_files=False):
                fake.calls.append(("as_dataset", split))
                return list(fake.examples)

        return Builder()

    def as_numpy(self, ds):
        self.calls.append(("as_numpy",))
        return iter(ds)


def test_tfds_path(monkeypatch, tmp_path, omniglot_spec):
    fake = _FakeTfds(omniglot_spec)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    c = tmp_path / "c"
    images, names = load_omniglot_characters(cache_dir=c)
    assert ("builder", "omniglot") in fake.calls and ("as_dataset", "train+test") in fake.calls
    exp_names, expected = expected_characters(omniglot_spec)
    assert names == exp_names and images.shape == expected.shape and images.dtype == np.uint8
    for got, want in zip(images, expected):  # tfds has no file names: compare drawings as sets
        assert sorted(x.tobytes() for x in got) == sorted(x.tobytes() for x in want)
    data = load_omniglot(sizes=SMALL, cache_dir=c)
    assert data["train"].shape == (6, DRAWINGS, 28, 28)
    # cached: the second and third loads did not touch tfds
    assert sum(1 for call in fake.calls if call[0] == "as_numpy") == 1


def test_tfds_failure_is_a_data_error(monkeypatch, tmp_path, omniglot_spec):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _FakeTfds(omniglot_spec, ConnectionError("no route\nto host")))
    with pytest.raises(DataError) as e:
        load_omniglot(cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert "tensorflow-datasets" in msg and "ConnectionError: no route to host" in msg and "--data-dir" in msg
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []


# --------------------------------------------------------------------------- synthetic Mini-ImageNet

@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_mini_imagenet_layouts(tmp_path, layout):
    d = write_mini(tmp_path / "mini", layout)
    data, classes = load_mini_imagenet_with_classes(d, cache_dir=tmp_path / "c")
    assert set(data) == {"train", "val", "test"}
    assert data["train"].shape == (3, 4, 84, 84, 3) and data["val"].shape == (2, 4, 84, 84, 3)
    assert all(a.dtype == np.uint8 for a in data.values())
    assert classes["train"] == ["n01", "n02", "n03"]
    for split, arr in data.items():
        for ci, cls in enumerate(classes[split]):
            for i in range(arr.shape[1]):
                mean = arr[ci, i].reshape(-1, 3).mean(axis=0)
                np.testing.assert_allclose(mean, _colour(split, cls, i), atol=3)  # class & image order
    again = load_mini_imagenet(d, cache_dir=tmp_path / "c")
    for k in data:
        np.testing.assert_array_equal(data[k], again[k])


def test_mini_imagenet_pixels(tmp_path):
    """Lossless 84x84 images come back bit-exact; other sizes are PIL LANCZOS resizes to 84x84."""
    rng = np.random.default_rng(0)
    d = tmp_path / "mini"
    originals = {}
    for i, split in enumerate(("train", "val", "test")):
        cls = d / split / f"n0{i}"  # the splits' classes are disjoint
        cls.mkdir(parents=True)
        a = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
        Image.fromarray(a).save(cls / "a.png")
        b = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
        Image.fromarray(b).convert("L").save(cls / "b.PNG")  # grayscale, smaller
        originals[split] = (a, b)
    data = load_mini_imagenet(d, cache_dir=tmp_path / "c")
    for split, (a, b) in originals.items():
        np.testing.assert_array_equal(data[split][0, 0], a)
        gray = Image.fromarray(b).convert("L").convert("RGB")
        np.testing.assert_array_equal(data[split][0, 1], np.asarray(gray.resize((84, 84), Image.LANCZOS)))
        assert (data[split][0, 1, ..., 0] == data[split][0, 1, ..., 2]).all()


def test_mini_imagenet_root_and_env(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_mini(root / "mini-imagenet-sample")
    a = load_dataset("mini-imagenet", root, cache_dir=tmp_path / "c")
    monkeypatch.setenv("FOMETA_DATA_DIR", str(root))
    b = load_dataset("miniimagenet", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(a["test"], b["test"])
    assert a["train"].shape == (3, 4, 84, 84, 3)


def test_mini_imagenet_cache_reuse(tmp_path, monkeypatch):
    d = write_mini(tmp_path / "mini")
    c = tmp_path / "c"
    first = load_mini_imagenet(d, cache_dir=c)
    monkeypatch.setattr(mini_mod, "decode_image", _boom)
    second = load_mini_imagenet(d, cache_dir=c)
    np.testing.assert_array_equal(first["val"], second["val"])
    # a source change (one image rewritten) is a new key
    img = d / "images" / "n0400000001.jpg"
    _solid((1, 2, 3), (84, 84)).save(img)
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded although"):
        load_mini_imagenet(d, cache_dir=c)


def test_mini_imagenet_uneven_classes(tmp_path):
    counts = {"train": {"n01": 4, "n02": 3, "n03": 4}, "val": {"n04": 2}, "test": {"n05": 2}}
    d = write_mini(tmp_path / "mini", "folders", counts=counts)
    with pytest.warns(DataWarning, match=r"n02: 3, .*keeping the first 3"):
        data = load_mini_imagenet(d, cache_dir=tmp_path / "c")
    assert data["train"].shape == (3, 3, 84, 84, 3)
    np.testing.assert_allclose(data["train"][0, 2].reshape(-1, 3).mean(0), _colour("train", "n01", 2), atol=3)


def test_mini_imagenet_errors(tmp_path):
    c = tmp_path / "c"
    # a folder in neither layout
    other = tmp_path / "other"
    (other / "pictures").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        load_mini_imagenet(other, cache_dir=c)
    msg = one_line_error(e)
    assert str(other) in msg and "'images + CSV'" in msg and "class folders" in msg

    # no data dir at all
    with pytest.raises(DataError) as e:
        load_mini_imagenet(cache_dir=c)
    assert "--data-dir" in one_line_error(e) and "FOMETA_DATA_DIR" in one_line_error(e)

    # wrong CSV header
    d = write_mini(tmp_path / "hdr")
    text = (d / "val.csv").read_text().replace("filename,label", "image,class", 1)
    (d / "val.csv").write_text(text)
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c)
    msg = one_line_error(e)
    assert str(d / "val.csv") in msg and "'image,class'" in msg and "'filename,label'" in msg

    # a malformed row
    d = write_mini(tmp_path / "row")
    with open(d / "test.csv", "a") as f:
        f.write("lonely.jpg\n")
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c)
    assert str(d / "test.csv") in one_line_error(e) and "lonely.jpg" in one_line_error(e)

    # a missing CSV
    d = write_mini(tmp_path / "nocsv")
    (d / "test.csv").unlink()
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c)
    assert f"missing {d / 'test.csv'}" in one_line_error(e)

    # a CSV naming an image that is not there
    d = write_mini(tmp_path / "noimg")
    (d / "images" / "n0200000003.jpg").unlink()
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c)
    assert str(d / "images" / "n0200000003.jpg") in one_line_error(e) and "train.csv" in one_line_error(e)

    # a missing split folder
    d = write_mini(tmp_path / "nosplit", "folders")
    for p in (d / "val").rglob("*.jpg"):
        p.unlink()
    for p in sorted((d / "val").rglob("*"), reverse=True):
        p.rmdir()
    (d / "val").rmdir()
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c)
    assert str(d / "val") in one_line_error(e) and "class-folder layout" in one_line_error(e)

    # an image that does not decode (truncated JPEG) leaves no cache entry
    d = write_mini(tmp_path / "trunc", "folders")
    bad = d / "train" / "n02" / "n0200000001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    c2 = tmp_path / "c2"
    with pytest.raises(DataError) as e:
        load_mini_imagenet(d, cache_dir=c2)
    assert str(bad) in one_line_error(e) and "cannot decode" in one_line_error(e)
    assert not c2.exists() or list(c2.iterdir()) == []


def test_load_dataset_dispatch(omniglot_dir, tmp_path):
    a = load_dataset("omniglot", omniglot_dir, split="maml", sizes=(5, 2, 3), cache_dir=tmp_path / "c")
    b = load_omniglot(omniglot_dir, split="maml", sizes=(5, 2, 3), cache_dir=tmp_path / "c")
    assert set(a) == {"train", "val", "test"}
    np.testing.assert_array_equal(a["val"], b["val"])
    with pytest.raises(DataError) as e:
        load_dataset("cifar", omniglot_dir)
    assert "'cifar'" in one_line_error(e) and "omniglot, mini-imagenet" in one_line_error(e)
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- real data

needs_real = pytest.mark.skipif(not REAL_DATA_DIR, reason="FOMETA_DATA_DIR is not set")


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(scope="session")
def real_omniglot(real_cache):
    """(characters, names, decode seconds) of the real Omniglot, decoded once per session."""
    t = time.perf_counter()
    images, names = load_omniglot_characters(REAL_DATA_DIR, cache_dir=real_cache)
    return images, names, time.perf_counter() - t


def _report(capsys, text):
    with capsys.disabled():
        print(f"\n[fometa.data] {text}")


@needs_real
def test_real_omniglot(real_omniglot, real_cache, capsys):
    images, names, decode_s = real_omniglot
    assert images.shape == (1623, 20, 28, 28) and images.dtype == np.uint8 and len(names) == 1623
    assert set(np.unique(images[:50])) == {0, 255}
    assert (images == 255).mean() > 0.8  # white background

    t = time.perf_counter()
    data = load_omniglot(REAL_DATA_DIR, cache_dir=real_cache)
    cached_s = time.perf_counter() - t
    _report(capsys, f"real Omniglot: decode {decode_s:.2f} s, cached load + split {cached_s:.3f} s")
    assert data["train"].shape == (1200, 20, 28, 28) and data["test"].shape == (423, 20, 28, 28)

    # the paper's split: random.seed(0); random.shuffle(sorted characters); first 1200 train
    shuffled = list(names)
    random.Random(0).shuffle(shuffled)
    pos = {n: i for i, n in enumerate(names)}
    np.testing.assert_array_equal(data["test"], images[[pos[n] for n in shuffled[1200:]]])

    # pixels equal the paper's PIL call on the original PNGs, for a few characters of both zips
    for zip_name, name in (("images_background.zip", names[0]), ("images_evaluation.zip", "ULOG/character26")):
        zip_path = next(p for p in (Path(REAL_DATA_DIR) / zip_name, Path(REAL_DATA_DIR) / "omniglot" / zip_name)
                        if p.is_file())
        with zipfile.ZipFile(zip_path) as z:
            members = sorted(m for m in z.namelist() if f"/{name}/" in m and m.endswith(".png"))
            assert len(members) == 20
            for j, m in enumerate(members):
                with Image.open(io.BytesIO(z.read(m))) as img:
                    paper = np.array(img.resize((28, 28))).astype("float32")
                np.testing.assert_array_equal(images[pos[name], j] / 255.0, paper)

    maml = load_omniglot(REAL_DATA_DIR, split="maml", cache_dir=real_cache)
    assert [maml[k].shape[0] for k in ("train", "val", "test")] == [1100, 100, 423]


@needs_real
def test_real_mini_imagenet_sample(real_cache, capsys):
    t = time.perf_counter()
    data = load_mini_imagenet(REAL_DATA_DIR, cache_dir=real_cache)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    load_mini_imagenet(REAL_DATA_DIR, cache_dir=real_cache)
    cached_s = time.perf_counter() - t
    _report(capsys, f"real Mini-ImageNet sample: decode {first_s:.2f} s, cached load {cached_s:.3f} s")
    for split in ("train", "val", "test"):
        assert data[split].shape == (5, 60, 84, 84, 3) and data[split].dtype == np.uint8


# --------------------------------------------------------------------------- what would be read wrongly

def test_the_papers_split_needs_the_official_characters(monkeypatch):
    """One character more shifted the seeded shuffle: 56 of 423 "paper" test characters
    were training ones, silently."""
    n = omni_mod.NUM_CHARACTERS + 1
    monkeypatch.setattr(omni_mod, "load_omniglot_characters",
                        lambda *a, **k: (np.zeros((n, 1, 28, 28), np.uint8), [""] * n))
    with pytest.raises(DataError) as e:
        load_omniglot("anywhere")
    assert "official 1623 characters; the data holds 1624 (pass sizes=" in one_line_error(e)
    assert len(load_omniglot("anywhere", sizes=(1200, 424))["test"]) == 424


def _encoded(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("img, words", [
    (Image.new("1", (105, 60), 1), "a 105x60 1 image"),  # was stretched to 28x28
    (Image.new("1", (1, 1), 1), "a 1x1 1 image"),
    (Image.new("RGBA", (105, 105), (0, 0, 0, 0)), "a 105x105 RGBA image"),  # strokes, all of it
])
def test_omniglot_takes_only_drawings_of_the_official_form(img, words):
    with pytest.raises(DataError) as e:
        omni_mod.decode_image(_encoded(img), "odd.png")
    assert words in one_line_error(e) and "105x105 without transparency" in one_line_error(e)


def test_an_encrypted_zip_entry_is_one_line(tmp_path, omniglot_spec):
    folder = write_omniglot(tmp_path / "omniglot", omniglot_spec)
    path = folder / "images_evaluation.zip"
    raw = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local, central header
        start = raw.index(signature)
        raw[start + flags_at] |= 1  # "encrypted"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_omniglot(folder, sizes=(2, 2), cache_dir=tmp_path / "c")
    assert "encrypted" in one_line_error(e)


@pytest.mark.parametrize("edit, words", [
    (lambda rows: rows + [rows[1]], "is listed more than once for class"),
    (lambda rows: rows[:1] + [("n0700000000.jpg", "n03")], "class 'n03' is in both the train and the test split"),
])
def test_mini_imagenet_splits_are_disjoint_and_list_each_image_once(tmp_path, edit, words):
    """A test split that repeated the training classes was evaluated on them, and a row
    listed twice was drawn as two examples, silently."""
    data = write_mini(tmp_path / "mini")
    name = "train.csv" if "listed" in words else "test.csv"
    with open(data / name, newline="") as f:
        rows = [tuple(r) for r in csv.reader(f)]
    with open(data / name, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))
    with pytest.raises(DataError) as e:
        load_mini_imagenet(data, cache_dir=tmp_path / "c")
    assert words in one_line_error(e)


def test_a_data_warning_is_given_again_when_the_data_comes_from_the_cache(tmp_path):
    """The uneven classes' warning came only with the first, decoding load; runs and
    evaluations after it used the truncated classes without a word."""
    counts = {s: dict(c) for s, c in MINI.items()}
    counts["test"]["n07"] = 3
    data = write_mini(tmp_path / "mini", counts=counts)
    said = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_mini_imagenet(data, cache_dir=tmp_path / "c")["test"].shape[1] == 3
        said.append([str(w.message) for w in caught if w.category is DataWarning])
    assert len(said[0]) == 1 and "keeping the first 3 images" in said[0][0]
    assert said[1] == said[0]
