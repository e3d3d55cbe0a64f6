"""Settings of a recognition module's gallery: where it lives, how it is built and searched."""
import dataclasses
import os
from typing import Optional

from .common import resolve_path
from .schema import ParamsError, setting


@dataclasses.dataclass(frozen=True)
class GalleryParams:
    index_dir: Optional[str] = setting(None, doc="where the live gallery lives; None: "
                                                 "$CLAS_SYSTEM_CACHE/galleries/<module>")
    image_root: Optional[str] = setting(None, doc="folder the data_file's image paths are relative to")
    data_file: Optional[str] = setting(None, doc="PaddleClas gallery list ('path<delimiter>label' per line), "
                                                 "built into index_dir when it holds no gallery yet")
    delimiter: str = setting("\t", doc="between path and label in data_file (labels may contain spaces)")
    index_method: str = setting("HNSW32", choices=("Flat", "HNSW32", "IVF"), doc="faiss index kind")
    dist_type: str = setting("IP", choices=("IP", "L2", "hamming"), doc="hamming needs feature.binarize")
    nlist: int = setting(256, min=1, doc="IVF cells (IVF searches exactly until it has enough vectors to train)")
    nprobe: Optional[int] = setting(None, min=1, doc="IVF cells searched per query; None: nlist / 8")
    pq_size: Optional[int] = setting(None, min=1, doc="IVF product-quantiser codes per vector; None: IVF,Flat")


@dataclasses.dataclass(frozen=True)
class GallerySettings:
    index_dir: str
    image_root: Optional[str]
    data_file: Optional[str]
    delimiter: str
    index_method: str
    dist_type: str
    nlist: int
    nprobe: Optional[int]
    pq_size: Optional[int]


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
        from clas_system import models  # here, not at the top: the engine package imports params

        index_dir = os.path.join(models.cache_dir(), "galleries", module_name)
    return GallerySettings(
        index_dir=index_dir,
        image_root=resolve_path(declared.image_root, f"{where}.image_root", kind="folder"),
        data_file=resolve_path(declared.data_file, f"{where}.data_file", kind="file"),
        delimiter=declared.delimiter, index_method=declared.index_method, dist_type=declared.dist_type,
        nlist=declared.nlist, nprobe=declared.nprobe, pq_size=declared.pq_size)
