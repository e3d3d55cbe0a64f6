"""The snapshot: settings, fingerprint, items, the serialized faiss index, and the sequence
number of the last log record it contains, in one .npz (np.savez, no pickle), replaced atomically."""
import json
import os
import zipfile

import numpy as np

from ..errors import GalleryError
from .log import fsync_directory

SNAPSHOT = "gallery.npz"
FORMAT_VERSION = 1


def json_array(value):
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def write_snapshot(directory, arrays):
    """Write to a temp file, fsync, os.replace over the snapshot, fsync the directory."""
    target = directory / SNAPSHOT
    temp = directory / (SNAPSHOT + ".tmp")
    try:
        with open(temp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
        fsync_directory(directory)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise GalleryError(f"cannot write snapshot {target}: {e}; the previous snapshot and log are intact") from None


def read_snapshot(path):
    """(meta, labels/docs, arrays) of a snapshot; a file that cannot be read raises naming it."""
    names = ("meta", "ids", "codes", "live", "records", "index")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in names}
            if "added_at" in npz.files:  # snapshots from before items recorded when they were added lack it
                arrays["added_at"] = npz["added_at"]
        meta = json.loads(arrays["meta"].tobytes())
        records = json.loads(arrays["records"].tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise GalleryError(f"{path}: snapshot is unreadable or corrupt ({type(e).__name__}: {e}); "
                           f"refusing to open rather than start empty") from None
    if meta.get("format") != FORMAT_VERSION:
        raise GalleryError(f"{path}: snapshot format {meta.get('format')!r} is not the supported {FORMAT_VERSION}")
    return meta, records, arrays


def snapshot_problems(meta, records, arrays, config):
    """What makes a snapshot's parts disagree with each other or with its settings."""
    ids, codes, live = arrays["ids"], arrays["codes"], arrays["live"]
    n = len(ids)
    problems = []
    if ids.dtype != np.int64 or ids.ndim != 1:
        problems.append(f"ids are {ids.dtype} {ids.shape}, expected int64 ({n},)")
    if codes.dtype != config.code_dtype or codes.shape != (n, config.code_width):
        problems.append(f"vectors are {codes.dtype} {codes.shape}, expected "
                        f"{np.dtype(config.code_dtype)} {(n, config.code_width)}")
    if live.dtype != bool or live.shape != (n,):
        problems.append(f"live mask is {live.dtype} {live.shape}, expected bool ({n},)")
    if "added_at" in arrays and arrays["added_at"].shape != (n,):
        problems.append(f"added_at is {arrays['added_at'].shape}, expected ({n},)")
    if len(records.get("labels", ())) != n or len(records.get("docs", ())) != n:
        problems.append(f"labels/docs do not number {n}, one per id")
    if n > 1 and not (np.diff(ids) > 0).all():
        problems.append("ids are not increasing")
    if n and meta.get("next_id", -1) <= ids[-1]:
        problems.append("next_id is not above every id")
    return problems
