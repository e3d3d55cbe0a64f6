"""PaddleClas's PP-ShiTu index format, read and written: `vector.index` + `id_map.pkl`.

    index = read_paddleclas_index("drink_dataset_v2.0/index")       # PaddleClasIndex
    import_into_gallery(index, gallery)                            # -> ids in the gallery
    write_paddleclas_index(gallery, "exported/")                   # predict_system.py loads it

What PaddleClas's deploy/python/build_gallery.py writes:
  vector.index  a faiss index: IndexIDMap2 over Flat / HNSW32 / IVF<n>,Flat (IP or L2), keyed by
                item id; for dist_type hamming a binary index (BFlat / BHNSW32 / BIVF<n>) keyed by
                position, holding sign bits packed most significant bit first.
  id_map.pkl    a pickle of {id: the gallery list line}, e.g. {0: "gallery/001.jpg\\tanmuxi"}, ids
                as numpy int64. predict_system.py shows `line.split()[1]`: the label's first
                word only (a label with spaces is cut at its first space; CJK labels survive).

id_map.pkl is read with a restricted unpickler that rebuilds only dicts, ints, strings and numpy
integer scalars; any other object in the file (the way a pickle runs code) is refused before
anything is called. The label of an item is the line's second field split on `delimiter`, spaces
kept. An export writes "<doc or id><delimiter><label>" lines, so PaddleClas reads the same label
(up to its first space).
"""
import dataclasses
import io
import os
import pickle
import shutil
import tempfile
from typing import List, Optional

import faiss
import numpy as np

from ..errors import GalleryError

VECTOR_INDEX = "vector.index"
ID_MAP = "id_map.pkl"
MAX_ID_MAP_BYTES = 1 << 30
# Where numpy's pickles find integer scalars: numpy < 2 and numpy >= 2 spellings.
NUMPY_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
NUMPY_DTYPE = ("numpy", "dtype")
# How pickle protocol 2 writes bytes (a numpy scalar's data): _codecs.encode(text, "latin1").
LATIN1_BYTES = ("_codecs", "encode")


@dataclasses.dataclass(frozen=True)
class PaddleClasIndex:
    ids: np.ndarray  # int64 [N]: the id_map keys, in the index's order
    vectors: np.ndarray  # float32 [N, dim]; 0/1 bits for hamming
    lines: List[str]  # id_map values: the gallery list line of each item
    method: str  # Flat | HNSW32 | IVF
    metric: str  # IP | L2 | hamming
    nlist: Optional[int]  # IVF cells


# ---- id_map.pkl ---------------------------------------------------------------------------------

def integer_dtype(*args):
    dtype = np.dtype(*args[:1])
    if dtype.kind not in "iu":
        raise pickle.UnpicklingError(f"refusing numpy dtype {dtype} (only integer scalars are allowed)")
    return np.dtype(*args)


def integer_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu" or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("refusing a numpy scalar that is not an integer")
    return np.frombuffer(data, dtype)[0]


def latin1_bytes(text, encoding):
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than protocol 2's latin1 bytes")
    return text.encode("latin1")


class IdMapUnpickler(pickle.Unpickler):
    """Rebuilds dict / int / str (pickle's own opcodes) and numpy integer scalars; nothing else."""

    def find_class(self, module, name):
        if (module, name) in NUMPY_SCALAR:
            return integer_scalar
        if (module, name) == NUMPY_DTYPE:
            return integer_dtype
        if (module, name) == LATIN1_BYTES:
            return latin1_bytes
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: id_map.pkl may hold only a dict of "
                                     f"integer ids to strings")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent reference")


def read_id_map(path):
    """id_map.pkl -> {int id: str line}; GalleryError for anything else in the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ID_MAP_BYTES + 1)
    except OSError as err:
        raise GalleryError(f"{path}: cannot read: {err}") from err
    if len(data) > MAX_ID_MAP_BYTES:
        raise GalleryError(f"{path}: larger than {MAX_ID_MAP_BYTES} bytes")
    try:
        loaded = IdMapUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise GalleryError(f"{path}: not a PaddleClas id map: {err}") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as err:
        raise GalleryError(f"{path}: not a readable pickle: {err}") from err
    if not isinstance(loaded, dict):
        raise GalleryError(f"{path}: expected a dict of id -> gallery line, got {type(loaded).__name__}")
    id_map = {}
    for key, value in loaded.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not isinstance(value, str):
            raise GalleryError(f"{path}: expected integer ids and string lines, got {key!r}: {value!r}")
        id_map[int(key)] = value
    return id_map


# ---- vector.index ---------------------------------------------------------------------------------

def float_index_contents(index, path):
    """(ids, vectors, method, metric, nlist) of a PaddleClas float index (IndexIDMap2 over a base)."""
    if not isinstance(index, faiss.IndexIDMap2):
        raise GalleryError(f"{path}: expected PaddleClas's IndexIDMap2, got {type(index).__name__}")
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    base = faiss.downcast_index(index.index)
    metric = {faiss.METRIC_INNER_PRODUCT: "IP", faiss.METRIC_L2: "L2"}.get(base.metric_type)
    if metric is None:
        raise GalleryError(f"{path}: metric {base.metric_type} is neither inner product nor L2")
    nlist = None
    if isinstance(base, faiss.IndexHNSW):
        method = "HNSW32"
    elif isinstance(base, faiss.IndexFlat):
        method = "Flat"
    elif isinstance(base, faiss.IndexIVFFlat):
        method, nlist = "IVF", int(base.nlist)
        base.make_direct_map()
    else:
        raise GalleryError(f"{path}: {type(base).__name__} is not one of PaddleClas's Flat, HNSW32, IVF,Flat")
    return ids, base.reconstruct_n(0, base.ntotal), method, metric, nlist


def binary_index_contents(index, path):
    """(ids, 0/1 vectors, method, "hamming", nlist) of a PaddleClas binary index (ids = positions)."""
    nlist = None
    if isinstance(index, faiss.IndexBinaryHNSW):
        method = "HNSW32"
    elif isinstance(index, faiss.IndexBinaryFlat):
        method = "Flat"
    elif isinstance(index, faiss.IndexBinaryIVF):
        method, nlist = "IVF", int(index.nlist)
        index.make_direct_map()
    else:
        raise GalleryError(f"{path}: {type(index).__name__} is not one of PaddleClas's BFlat, BHNSW32, BIVF")
    codes = np.stack([index.reconstruct(i) for i in range(index.ntotal)]) if index.ntotal else \
        np.zeros((0, index.code_size), np.uint8)
    return np.arange(index.ntotal, dtype=np.int64), np.unpackbits(codes, axis=1).astype(np.float32), \
        method, "hamming", nlist


def read_vector_index(path):
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise GalleryError(f"{path}: cannot read: {err}") from err
    try:
        if magic.startswith(b"IB"):  # faiss's binary index fourccs: IBxF, IBHf, IBwF, ...
            return binary_index_contents(faiss.read_index_binary(path), path)
        return float_index_contents(faiss.read_index(path), path)
    except RuntimeError as err:  # faiss reports unreadable files this way
        raise GalleryError(f"{path}: not a faiss index faiss can read: {err}") from err


def read_paddleclas_index(directory):
    """A PaddleClas index folder -> PaddleClasIndex, every id in the index present in id_map."""
    vector_path, id_map_path = os.path.join(directory, VECTOR_INDEX), os.path.join(directory, ID_MAP)
    for path in (vector_path, id_map_path):
        if not os.path.isfile(path):
            raise GalleryError(f"{directory}: no {os.path.basename(path)} (a PaddleClas index folder holds "
                               f"{VECTOR_INDEX} and {ID_MAP})")
    id_map = read_id_map(id_map_path)
    ids, vectors, method, metric, nlist = read_vector_index(vector_path)
    missing = [int(i) for i in ids if int(i) not in id_map]
    if missing:
        raise GalleryError(f"{id_map_path}: no line for ids {missing[:10]} held in {VECTOR_INDEX}")
    return PaddleClasIndex(ids=ids, vectors=np.ascontiguousarray(vectors, np.float32),
                           lines=[id_map[int(i)] for i in ids], method=method, metric=metric, nlist=nlist)


def label_of(line, delimiter, where):
    """A gallery list line's label: its second field, spaces kept."""
    fields = line.strip().split(delimiter)
    if len(fields) < 2 or not fields[1].strip():
        raise GalleryError(f"{where}: {line!r} has no label after a {delimiter!r} delimiter "
                           f"(the delimiter PaddleClas built it with; see --delimiter)")
    return fields[1].strip()


def import_into_gallery(index, gallery, delimiter="\t", batch=4096):
    """Add every item of a PaddleClasIndex to `gallery` (its label, and its line as the doc); returns
    the new gallery ids, in the index's order."""
    labels = [label_of(line, delimiter, f"{ID_MAP} id {int(i)}") for i, line in zip(index.ids, index.lines)]
    docs = [line.strip() for line in index.lines]
    new_ids = []
    for start in range(0, len(labels), batch):
        new_ids.extend(gallery.add(index.vectors[start:start + batch], labels[start:start + batch],
                                   docs[start:start + batch]))
    return new_ids


# ---- export -----------------------------------------------------------------------------------------

def export_line(item_id, label, doc, delimiter):
    """The id_map line for an item: its imported line when it still names this label, else
    "<id><delimiter><label>" (a first field without spaces, so PaddleClas's split()[1] is the label)."""
    if doc and len(doc.split(delimiter)) >= 2 and doc.split(delimiter)[1].strip() == label:
        return doc
    return f"{item_id}{delimiter}{label}"


def gallery_contents(gallery):
    """(ids, vectors, labels, docs) of every live item of a gallery."""
    chunks = list(gallery.items())
    if not chunks:
        return np.zeros(0, np.int64), None, [], []
    return (np.concatenate([c[0] for c in chunks]).astype(np.int64), np.concatenate([c[1] for c in chunks]),
            [label for c in chunks for label in c[2]], [doc for c in chunks for doc in c[3]])


def paddleclas_faiss_index(vectors, ids, method, metric):
    """The index build_gallery.py would build for these vectors (IVF: its min(N // 8, 65536) cells)."""
    count, dim = len(vectors), vectors.shape[1]
    spec = f"IVF{max(1, min(count // 8, 65536))},Flat" if method == "IVF" else method
    if metric == "hamming":
        index = faiss.index_binary_factory(dim, "B" + spec)
        codes = np.packbits(vectors > 0, axis=1)
        if method == "IVF":
            index.train(codes)
        index.add(codes)
        return index
    index = faiss.IndexIDMap2(faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT if metric == "IP"
                                                  else faiss.METRIC_L2))
    vectors = np.ascontiguousarray(vectors, np.float32)
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    return index


def write_paddleclas_index(gallery, directory, delimiter="\t"):
    """Write the gallery's live items as a PaddleClas index folder (created; must hold no index).
    Returns {"count", "method", "metric", "dim"}. Hamming indexes are keyed by position, as
    PaddleClas's are."""
    stats = gallery.stats()
    if any(os.path.exists(os.path.join(directory, name)) for name in (VECTOR_INDEX, ID_MAP)):
        raise GalleryError(f"{directory} already holds a PaddleClas index; remove it or choose another folder")
    ids, vectors, labels, docs = gallery_contents(gallery)
    if not len(ids):
        raise GalleryError("the gallery is empty: nothing to export (PaddleClas cannot search an empty index)")
    metric, method = stats["metric"], stats.get("method") or "Flat"
    keys = np.arange(len(ids), dtype=np.int64) if metric == "hamming" else ids
    index = paddleclas_faiss_index(vectors, keys, method if method in ("Flat", "HNSW32", "IVF") else "Flat", metric)
    id_map = {int(key): export_line(int(item_id), label, doc, delimiter)
              for key, item_id, label, doc in zip(keys, ids, labels, docs)}
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(dir=directory, prefix=".exporting-")
    try:
        if metric == "hamming":
            faiss.write_index_binary(index, os.path.join(staging, VECTOR_INDEX))
        else:
            faiss.write_index(index, os.path.join(staging, VECTOR_INDEX))
        with open(os.path.join(staging, ID_MAP), "wb") as f:
            pickle.dump(id_map, f)
        for name in (VECTOR_INDEX, ID_MAP):
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"count": len(ids), "method": method, "metric": metric, "dim": int(vectors.shape[1])}
