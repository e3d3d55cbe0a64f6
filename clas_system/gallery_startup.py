"""The gallery at start-up: open the one in index_dir, build it from a PaddleClas gallery list,
or create it empty, shaped and fingerprinted for the feature extractor."""
import logging
import os
import shutil
from pathlib import Path

from . import gallery as gallery_files
from .gallery import GalleryError, create_gallery, open_gallery, read_gallery_list

log = logging.getLogger("clas_system")

def holds_gallery(index_dir):
    """Whether index_dir has a gallery's files (then it is opened, never silently rebuilt)."""
    return any((Path(index_dir) / name).exists() for name in (gallery_files.SNAPSHOT, gallery_files.WAL))


def new_gallery(directory, settings, extractor):
    """An empty gallery in `directory` shaped for this feature extractor, fingerprint recorded."""
    return create_gallery(directory, extractor.dim, method=settings.index_method, metric=settings.dist_type,
                          fingerprint=extractor.fingerprint, nlist=settings.nlist, pq_size=settings.pq_size,
                          nprobe=settings.nprobe)


def fill_from_list(gallery, entries, extractor):
    """Embed (image path, label) entries in batches and add them to the gallery."""
    size = extractor.settings.serving.batch_size
    for start in range(0, len(entries), size):
        chunk = entries[start:start + size]
        images = []
        for path, _label in chunk:
            with open(path, "rb") as f:
                images.append(f.read())
        gallery.add(extractor.embed_images(images, [path for path, _label in chunk]),
                    [label for _path, label in chunk])


def build_gallery(settings, extractor):
    """The PaddleClas gallery list settings.data_file, embedded into a new gallery at index_dir.

    Built in a sibling folder and renamed into place when complete, so a build cut short leaves
    no half-filled gallery that a later start would take for the real one."""
    index_dir = Path(settings.index_dir)
    entries = read_gallery_list(settings.data_file, settings.image_root, settings.delimiter)
    if index_dir.exists() and any(index_dir.iterdir()):
        raise GalleryError(f"{index_dir}: not empty, and holds no gallery; empty it or choose another index_dir")
    staging = index_dir.with_name(f".{index_dir.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        gallery = new_gallery(staging, settings, extractor)
        try:
            fill_from_list(gallery, entries, extractor)
            gallery.save()
        finally:
            gallery.close()
        if index_dir.exists():
            index_dir.rmdir()
        staging.rename(index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return open_gallery(index_dir, expected_fingerprint=extractor.fingerprint)


def open_or_build_gallery(settings, extractor):
    """Open the gallery in index_dir (refusing a corrupt one or one made with other features);
    else build it from data_file; else create it empty."""
    if holds_gallery(settings.index_dir):
        if settings.data_file is not None:
            log.warning("%s holds a gallery: opening it as it is (data_file %s is only read to build a new one)",
                        settings.index_dir, settings.data_file)
        return open_gallery(settings.index_dir, expected_fingerprint=extractor.fingerprint)
    if settings.data_file is not None:
        return build_gallery(settings, extractor)
    return new_gallery(settings.index_dir, settings, extractor)
