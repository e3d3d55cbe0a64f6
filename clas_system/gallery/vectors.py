"""Vectors in, faiss index out: checking what callers pass, index construction, and scores.

Scores: higher is better for every metric, and hits come best first.
  IP       inner product; the cosine similarity when features are L2-normalised, as PaddleClas's are.
           The gallery never normalises anything itself.
  L2       negative squared Euclidean distance. PaddleClas reports faiss's squared distance itself
           (lower is better); here its sign is flipped, so 0 is an exact match.
  hamming  1 - hamming_distance / dim, in [0, 1]. Vectors of `dim` values are binarised as
           value > 0 (so 0/1 codes and sign codes both work) and packed with np.packbits.
"""
import faiss
import numpy as np

from ..errors import GalleryInputError

# faiss's default efSearch of 16 misses true neighbours on 512-d features even at k=5.
HNSW_EF_SEARCH = 64
# faiss warns when k-means gets fewer training points than this per centroid.
POINTS_PER_CENTROID = 39


def vectors_to_codes(vectors, config, what="vectors"):
    """[n, dim] (or one [dim] vector) -> float32 [n, dim], or packed bits [n, dim/8] for hamming."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise GalleryInputError(f"{what} must be a numeric array [n, {config.dim}]: {e}", what) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise GalleryInputError(f"{what} must be a 2-D array [n, {config.dim}], got shape {array.shape}", what)
    if array.shape[1] != config.dim:
        raise GalleryInputError(f"{what} have dimension {array.shape[1]}, the gallery expects {config.dim}", what)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        raise GalleryInputError(f"{what} contain NaN or infinite values in rows {bad_rows[:10].tolist()}", what,
                                int(bad_rows[0]))
    if config.binary:
        return np.packbits(array > 0, axis=1)
    return np.ascontiguousarray(array)


def ivf_training_size(nlist, pq_size=None):
    """How many vectors an IVF gallery holds before it trains; until then it searches exactly."""
    return POINTS_PER_CENTROID * max(nlist, 256 if pq_size else 1)  # PQ codebooks have 256 centroids


def index_factory_string(config, trained_ivf):
    """The faiss factory string; an IVF gallery not yet trained uses an exact index."""
    if config.method == "IVF" and trained_ivf:
        if config.binary:
            return f"BIVF{config.nlist}"
        return f"IVF{config.nlist},{f'PQ{config.pq_size}' if config.pq_size else 'Flat'}"
    base = "Flat" if config.method == "IVF" else config.method
    return f"IDMap2,{'B' if config.binary else ''}{base}"


def new_index(config, trained_ivf=False):
    """An empty faiss index whose labels are gallery ids (IVF: still to be trained)."""
    spec = index_factory_string(config, trained_ivf)
    if config.binary:
        index = faiss.index_binary_factory(config.dim, spec)
    else:
        metric = faiss.METRIC_INNER_PRODUCT if config.metric == "IP" else faiss.METRIC_L2
        index = faiss.index_factory(config.dim, spec, metric)
    tune_index(index, config)
    return index


def tune_index(index, config):
    if isinstance(index, (faiss.IndexIVF, faiss.IndexBinaryIVF)):
        index.nprobe = config.nprobe
    if config.method == "HNSW32":
        downcast = faiss.downcast_IndexBinary if config.binary else faiss.downcast_index
        downcast(index.index).hnsw.efSearch = HNSW_EF_SEARCH


def serialize_index(index, config):
    return faiss.serialize_index_binary(index) if config.binary else faiss.serialize_index(index)


def deserialize_index(data, config):
    index = faiss.deserialize_index_binary(data) if config.binary else faiss.deserialize_index(data)
    tune_index(index, config)
    return index


def scores_from_distances(distances, config):
    """faiss distances -> scores where higher is better (see the module docstring)."""
    if config.metric == "IP":
        return distances.astype(np.float64)
    if config.metric == "L2":
        return -distances.astype(np.float64)
    return 1.0 - distances.astype(np.float64) / config.dim
