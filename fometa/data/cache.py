"""An on-disk cache of decoded datasets, so decoding and resizing happen once.

Format: one uncompressed ``.npz`` per entry (``np.savez``, loaded with
``allow_pickle=False``), named ``<dataset>-<key>.npz`` where ``<key>`` is the first
24 hex digits of the SHA-256 of a JSON description of the entry: the dataset, the
preprocessing version, and a fingerprint of every source file (path relative to the
dataset folder, size in bytes, mtime in nanoseconds). Editing, replacing, adding or
removing a source file, or bumping a loader's preprocessing version, therefore
gives a new key; stale entries are never read (delete the folder to reclaim space).
Each entry also stores that JSON under ``__meta__``; a load checks it.

Writes are atomic: the arrays go to a temporary file in the cache folder, which
is flushed, synced and then renamed over the final name with ``os.replace``. A
failed or interrupted load never leaves a readable half-written entry; an entry
that does not read back (truncated by hand, disk error) is treated as a miss,
warned about, and rebuilt. A cache folder that cannot be written only costs a
warning: the data is still returned.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import secrets
import struct
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from fometa.errors import DataWarning, one_line

META_KEY = "__meta__"
WARNINGS_KEY = "__warnings__"  # the DataWarnings that decoding the entry gave: given again
_TOLD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("told", default=None)
_TMP_SUFFIX = ".tmp"
_STALE_TMP_S = 3600.0


def file_fingerprint(path: Path, rel: str) -> list:
    """``[rel, size, mtime_ns]`` of `path` (raises OSError when it cannot be stat'ed)."""
    st = path.stat()
    return [rel, st.st_size, st.st_mtime_ns]


def make_key(description: Mapping) -> tuple[str, str]:
    """(hex key, canonical JSON) of a JSON-serialisable description of a cache entry."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24], text


def entry_path(cache_dir: Path, dataset: str, key: str) -> Path:
    """Where the entry for `dataset` with `key` lives."""
    return cache_dir / f"{dataset}-{key}.npz"


def cached(cache_dir: Path, dataset: str, description: Mapping, names: Iterable[str],
           build: Callable[[], Mapping[str, np.ndarray]]) -> Mapping[str, np.ndarray]:
    """The arrays `names` of `dataset`'s entry keyed on `description`: read from
    `cache_dir`, or made by `build()` (a mapping holding them) and saved there."""
    key, meta = make_key(description)
    path = entry_path(cache_dir, dataset, key)
    hit = load(path, meta, names)
    if hit is not None:
        for message in hit.pop(WARNINGS_KEY, ()):  # what the decoding said, said again
            warnings.warn(str(message), DataWarning, stacklevel=3)
        return hit
    told: list[str] = []
    token = _TOLD.set(told)  # per thread and context, unlike warnings.catch_warnings
    try:
        arrays = build()
    finally:
        _TOLD.reset(token)
    save(path, meta, {**arrays, WARNINGS_KEY: np.array(told, dtype=str)})
    return arrays


def data_warning(message: str, stacklevel: int = 2) -> None:
    """A DataWarning about the data's content (e.g. uneven classes), also kept with the cache
    entry being built, if any, so that every later load from the cache gives it again."""
    told = _TOLD.get()
    if told is not None:
        told.append(message)
    warnings.warn(message, DataWarning, stacklevel=stacklevel + 1)


def load(path: Path, meta: str, names: Iterable[str]) -> dict[str, np.ndarray] | None:
    """The arrays `names` of the entry at `path`, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:  # entries older than WARNINGS_KEY have none
            told = [WARNINGS_KEY] if f"{WARNINGS_KEY}.npy" in zf.namelist() else []
        arrays = _read_npz(path, [META_KEY, *names, *told])
        if str(arrays.pop(META_KEY)) != meta:
            raise ValueError("its description does not match its key")
        return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, struct.error) as e:
        warnings.warn(
            f"ignoring unreadable cache entry {path} ({one_line(e)}); rebuilding it",
            DataWarning, stacklevel=3,
        )
        return None


def _read_npz(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Read arrays from an uncompressed .npz straight from the file.

    ``np.load`` of an .npz copies each member through ``zipfile`` in chunks (for
    the 1.3 GB of the full Mini-ImageNet we measured 0.7-4.8 s on a busy 2-core
    VM); the members that ``np.savez`` writes are stored uncompressed, so each one
    is a plain .npy at a known offset and ``read_array`` can use ``np.fromfile``
    on it (0.2-1.3 s on the same machine).
    """
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for name in names:
            info = zf.getinfo(f"{name}.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            out[name] = np.lib.format.read_array(f, allow_pickle=False)
            if f.tell() - start != info.file_size:
                raise ValueError(f"{info.filename} does not span its {info.file_size} bytes")
    return out


def _write_npz(fileobj, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to the open binary file as an uncompressed .npz."""
    np.savez(fileobj, **arrays)


def save(path: Path, meta: str, arrays: Mapping[str, np.ndarray]) -> bool:
    """Atomically write `arrays` (plus `meta`) to `path`; True on success, False (and a warning) on failure."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(path.parent)
        # os.open with 0o666 (not mkstemp's 0o600) so the entry gets the usual umask permissions.
        tmp = path.parent / f".{path.stem}.{os.getpid()}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, {**arrays, META_KEY: np.array(meta)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError as e:
        warnings.warn(
            f"could not write the cache entry {path} ({one_line(e)}); the data was loaded but "
            "will be decoded again next time (set FOMETA_CACHE_DIR to a writable folder)",
            DataWarning, stacklevel=3,
        )
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _remove_stale_tmp(folder: Path) -> None:
    """Delete temp files that a killed writer left behind more than an hour ago."""
    now = time.time()
    for p in folder.glob(f".*{_TMP_SUFFIX}"):
        try:
            if now - p.stat().st_mtime > _STALE_TMP_S:
                p.unlink()
        except OSError:
            pass
