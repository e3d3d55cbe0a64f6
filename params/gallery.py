"""Settings of a recognition module's gallery: which backend, where it lives, how it is built and searched."""
import dataclasses
import os
from typing import Optional

from .common import cache_dir, resolve_path
from .schema import ParamsError, setting

INDEX_BACKENDS = ("faiss", "milvus")
INDEX_METHODS = ("Flat", "HNSW32", "IVF")
METRICS = ("IP", "L2", "hamming")
MILVUS_CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
DEFAULT_COLLECTION = "rec_system_gallery"


def collection_name_problem(name):
    """What is wrong with a Milvus collection name, or None."""
    if not isinstance(name, str) or not name or name[0].isdigit() or not name.replace("_", "a").isalnum():
        return f"{name!r}; use letters, digits and underscores, not starting with a digit"
    return None


@dataclasses.dataclass(frozen=True)
class MilvusSettings:
    uri: Optional[str] = setting(None, doc="http://host:19530 for a Milvus server or cluster (or a Milvus Lite "
                                           "standalone server); a local .db file for Milvus Lite in one process")
    collection: str = setting(DEFAULT_COLLECTION, doc="collection holding the gallery (created when missing)")
    token: Optional[str] = setting(None, doc="'user:password' or an API key, for servers with authentication")
    index_type: str = setting("FLAT", doc="Milvus index: FLAT (exact), HNSW, IVF_FLAT, IVF_PQ, AUTOINDEX, ...")
    index_params: dict = setting({}, doc="index build parameters, e.g. {'M': 32, 'efConstruction': 200}")
    search_params: dict = setting({}, doc="search parameters, e.g. {'ef': 64} or {'nprobe': 32}")
    consistency_level: str = setting("Strong", choices=MILVUS_CONSISTENCY_LEVELS,
                                     doc="Strong: every acknowledged change is seen by the next search anywhere")
    timeout_s: int = setting(5, min=1, doc="deadline in seconds of each Milvus call and of connecting: a dead or "
                                           "hung server answers `unavailable` after about this long")
    load_timeout_s: int = setting(300, min=1, doc="deadline in seconds of the calls that wait while Milvus builds "
                                                  "or loads a collection (start-up, gallery save and rename)")


@dataclasses.dataclass(frozen=True)
class CurationSettings:
    keep_thumbnails: bool = setting(True, doc="keep a small JPEG of each added image (the gallery's `thumbnail` "
                                              "action and /ui/ show it); about 3-6 kB per item")
    keep_regions: bool = setting(True, doc="keep each added image at region_side pixels, so `clas-gallery reembed` "
                                           "can rebuild the gallery for another feature model; about 15-40 kB per item")
    region_side: int = setting(320, min=64, max=1024, doc="longer side in pixels of a kept region (JPEG); at "
                                                          "least the feature model's input size")
    review_max: int = setting(0, min=0, max=10000, doc="unrecognised regions kept for the review queue (the "
                                                        "`review`, `enrol` and `dismiss` actions); 0: none are kept")
    review_retention_h: float = setting(168.0, min=0.0, doc="hours an entry stays in the review queue")


@dataclasses.dataclass(frozen=True)
class GalleryParams:
    index_backend: str = setting("faiss", choices=INDEX_BACKENDS,
                           doc="faiss: files in index_dir, shared by the workers of one machine; "
                               "milvus: a Milvus collection, shared by any number of servers")
    index_dir: Optional[str] = setting(None, doc="where the live faiss gallery lives; None: "
                                                 "$CLAS_SYSTEM_CACHE/galleries/<module>")
    image_root: Optional[str] = setting(None, doc="folder the data_file's image paths are relative to")
    data_file: Optional[str] = setting(None, doc="PaddleClas gallery list ('path<delimiter>label' per line), "
                                                 "built into the gallery when it holds none yet")
    delimiter: str = setting("\t", doc="between path and label in data_file (labels may contain spaces)")
    index_method: str = setting("HNSW32", choices=INDEX_METHODS, doc="faiss index kind")
    dist_type: str = setting("IP", choices=METRICS, doc="hamming needs feature.binarize "
                                                                         "(faiss only)")
    nlist: int = setting(256, min=1, doc="IVF cells (IVF searches exactly until it has enough vectors to train)")
    nprobe: Optional[int] = setting(None, min=1, doc="IVF cells searched per query; None: nlist / 8")
    pq_size: Optional[int] = setting(None, min=1, doc="IVF product-quantiser codes per vector; None: IVF,Flat")
    milvus: MilvusSettings = setting(MilvusSettings(), doc="index_backend milvus only")
    curation: CurationSettings = setting(CurationSettings(), doc="what the gallery keeps beside each item's vector "
                                                                 "(thumbnails, regions) and the review queue")


@dataclasses.dataclass(frozen=True)
class GallerySettings:
    index_backend: str
    index_dir: str
    image_root: Optional[str]
    data_file: Optional[str]
    delimiter: str
    index_method: str
    dist_type: str
    nlist: int
    nprobe: Optional[int]
    pq_size: Optional[int]
    milvus: Optional[MilvusSettings]  # set for backend milvus
    curation: CurationSettings


def milvus_params(declared, where):
    """The milvus section, checked for index_backend milvus."""
    milvus = declared.milvus
    if not milvus.uri:
        raise ParamsError(f"{where}.milvus.uri: index_backend milvus needs the Milvus server's address, e.g. "
                          f"http://127.0.0.1:19530")
    problem = collection_name_problem(milvus.collection)
    if problem is not None:
        raise ParamsError(f"{where}.milvus.collection: {problem}")
    if declared.dist_type == "hamming":
        raise ParamsError(f"{where}.dist_type: hamming is faiss-only (Milvus Lite has no binary vectors); "
                          f"use index_backend faiss")
    if declared.pq_size is not None:
        raise ParamsError(f"{where}.pq_size: a faiss setting; with index_backend milvus set "
                          f"milvus.index_type 'IVF_PQ' and milvus.index_params {{'nlist': ..., 'm': ...}}")
    return milvus


def gallery_settings(declared, feature, module_name, where):
    if declared.dist_type == "hamming" and not feature.binarize:
        raise ParamsError(f"{where}.dist_type: hamming compares bits; set feature.binarize to true")
    if feature.binarize and declared.dist_type != "hamming":
        raise ParamsError(f"{where}.dist_type: binarized features are searched with dist_type hamming, "
                          f"not {declared.dist_type}")
    if declared.data_file is not None and declared.image_root is None:
        raise ParamsError(f"{where}.image_root: set the folder data_file's image paths are relative to")
    if declared.index_dir is not None:
        index_dir = os.path.abspath(os.path.expanduser(declared.index_dir))
    else:
        index_dir = os.path.join(cache_dir(), "galleries", module_name)
    return GallerySettings(
        index_backend=declared.index_backend,
        index_dir=index_dir,
        image_root=resolve_path(declared.image_root, f"{where}.image_root", kind="folder"),
        data_file=resolve_path(declared.data_file, f"{where}.data_file", kind="file"),
        delimiter=declared.delimiter, index_method=declared.index_method, dist_type=declared.dist_type,
        nlist=declared.nlist, nprobe=declared.nprobe, pq_size=declared.pq_size,
        milvus=milvus_params(declared, where) if declared.index_backend == "milvus" else None,
        curation=declared.curation)
