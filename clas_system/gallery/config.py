"""A gallery's checked settings (shape, index, metric, fingerprint), shared by every backend."""
import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from params.gallery import INDEX_METHODS, METRICS

from ..errors import GalleryError, short


@dataclass(frozen=True)
class GalleryConfig:
    dim: int
    method: str
    metric: str
    nlist: int
    pq_size: Optional[int]
    nprobe: int
    fingerprint: Optional[dict]

    @property
    def binary(self):
        return self.metric == "hamming"

    @property
    def code_width(self):
        """Bytes per packed code (hamming) or floats per vector."""
        return self.dim // 8 if self.binary else self.dim

    @property
    def code_dtype(self):
        return np.uint8 if self.binary else np.float32


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GalleryError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def json_copy(value, name):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise GalleryError(f"{name} must be JSON-serialisable: {e}") from None


def gallery_config(dim, method="HNSW32", metric="IP", fingerprint=None, nlist=256, pq_size=None, nprobe=None):
    """Checked settings; every bad value raises GalleryError naming it and what is allowed."""
    dim = positive_int(dim, "dim")
    if method not in INDEX_METHODS:
        raise GalleryError(f"unknown index method {method!r}; allowed: {', '.join(INDEX_METHODS)}")
    if metric not in METRICS:
        raise GalleryError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if metric == "hamming" and dim % 8:
        raise GalleryError(f"metric 'hamming' needs dim to be a multiple of 8 (bits are packed in bytes), got {dim}")
    nlist = positive_int(nlist, "nlist")
    if pq_size is not None:
        pq_size = positive_int(pq_size, "pq_size")
        if method != "IVF":
            raise GalleryError(f"pq_size applies only to method 'IVF', not {method!r}")
        if metric == "hamming":
            raise GalleryError("pq_size cannot be used with metric 'hamming' (binary IVF has no PQ)")
        if dim % pq_size:
            raise GalleryError(f"pq_size must divide dim: {dim} is not a multiple of {pq_size}")
    nprobe = max(1, nlist // 8) if nprobe is None else positive_int(nprobe, "nprobe")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise GalleryError(f"fingerprint must be a dict or None, got {type(fingerprint).__name__}")
    return GalleryConfig(dim, method, metric, nlist, pq_size, min(nprobe, nlist),
                         json_copy(fingerprint, "fingerprint"))


def fingerprint_differences(stored, expected):
    """The keys whose values differ, each as 'key (gallery: ..., expected: ...)'."""
    def shown(d, key):
        return "missing" if key not in d else short(repr(d[key]))
    stored, expected = stored or {}, expected or {}
    keys = sorted(set(stored) | set(expected))
    return [f"{key} (gallery: {shown(stored, key)}, expected: {shown(expected, key)})"
            for key in keys if key not in stored or key not in expected or stored[key] != expected[key]]


def check_fingerprint(where, stored, expected):
    """Raise GalleryError naming the differing keys unless `stored` (the gallery's) equals `expected`."""
    expected = json_copy(expected, "expected_fingerprint")
    if expected == stored:
        return
    if stored is None:
        raise GalleryError(f"{where}: the gallery was created without a fingerprint, so it cannot be "
                           f"checked against {short(repr(expected))}; rebuild it with one")
    differences = ", ".join(fingerprint_differences(stored, expected))
    raise GalleryError(
        f"{where}: gallery fingerprint differs in {differences}. "
        f"It was built with a different feature model or preprocessing, so its scores against these "
        f"features would be meaningless (typically every score falls below the threshold); rebuild the gallery")
