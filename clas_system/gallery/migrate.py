"""One gallery into another (faiss <-> milvus), checked by counts and identical top-1 answers.

    report = migrate_gallery(open_faiss_gallery("gallery/"), create_milvus_gallery(settings, dim, metric, fp))

Items keep their labels and docs; ids are the target's own (Milvus assigns them). The report
gives the counts and how many queries were checked. The target must be new: migrating into a
gallery that already holds items would mix two galleries.

    clas-gallery migrate --to milvus --index-dir /srv/gallery --milvus-uri http://127.0.0.1:19530
    (migrate_between behind it; --to faiss goes the other way into a new --index-dir)
"""
import shutil

import numpy as np

from ..errors import GalleryError
from .faiss_backend import create_faiss_gallery, holds_faiss_gallery, open_faiss_gallery
from .milvus_backend import create_milvus_gallery, open_milvus_gallery

CHECKED_QUERIES = 200
# Scores computed by two engines differ in the last float32 bits; a top-1 whose label differs
# is accepted only as a tie within this margin (duplicate or equidistant items).
SCORE_TOLERANCE = 1e-4


def migrate_gallery(source, target, checked_queries=CHECKED_QUERIES, batch=4096):
    """Copy every live item of `source` into the empty `target`, then verify; returns a report dict.
    Raises GalleryError if the counts differ or a checked query's best hit differs."""
    if (source.config.dim, source.config.metric) != (target.config.dim, target.config.metric):
        raise GalleryError(f"cannot migrate: source is {source.config.dim}-d {source.config.metric}, target is "
                           f"{target.config.dim}-d {target.config.metric}")
    if source.config.fingerprint != target.config.fingerprint:
        raise GalleryError("cannot migrate: source and target were made for different feature fingerprints")
    if target.count():
        raise GalleryError(f"cannot migrate into a gallery that already holds {target.count()} items; "
                           f"give a new one")
    copied, samples = 0, []
    for _ids, vectors, labels, docs in source.items(batch):
        target.add(vectors, labels, docs)
        if copied < checked_queries:
            samples.append(vectors[:checked_queries - copied])
        copied += len(labels)
    target.save()
    report = {"copied": copied, "source_count": source.count(), "target_count": target.count()}
    if report["target_count"] != copied:
        raise GalleryError(f"migration incomplete: copied {copied} items but the target holds "
                           f"{report['target_count']}")
    queries = np.concatenate(samples)[:checked_queries] if samples else np.empty((0, source.config.dim))
    report["checked_queries"] = len(queries)
    mismatches = top1_mismatches(source, target, queries)
    if mismatches:
        raise GalleryError(f"migration check failed: {len(mismatches)} of {len(queries)} queries have another "
                           f"best hit in the target, e.g. {mismatches[0]}")
    return report


def top1_mismatches(source, target, queries, depth=5):
    """Queries whose best hit in the target is not a best hit in the source (any of the source's
    hits tied with its best counts, so duplicates may come back in either order)."""
    if not len(queries):
        return []
    mismatches = []
    for i, (before, after) in enumerate(zip(source.search(queries, depth), target.search(queries, 1))):
        if not before or not after:
            if before or after:
                mismatches.append(f"query {i}: {before[:1]} vs {after}")
            continue
        best = before[0].score
        tied = {(hit.label, hit.doc) for hit in before if best - hit.score <= SCORE_TOLERANCE}
        if (after[0].label, after[0].doc) not in tied or abs(after[0].score - best) > SCORE_TOLERANCE:
            mismatches.append(f"query {i}: {before[0].label!r} ({best:.5f}) vs "
                              f"{after[0].label!r} ({after[0].score:.5f})")
    return mismatches


def migrate_between(index_dir, milvus, to, index_method="HNSW32"):
    """`clas-gallery migrate`: the faiss gallery in index_dir into a new Milvus collection
    (to="milvus"), or a Milvus collection into a new faiss gallery in index_dir (to="faiss").
    Same dim, metric and fingerprint; a target that fails the checks is removed again."""
    if to not in ("faiss", "milvus"):
        raise GalleryError(f"migrate to {to!r}: choose faiss or milvus")
    if to == "faiss" and holds_faiss_gallery(index_dir):
        raise GalleryError(f"{index_dir} already holds a gallery; migrate into a new --index-dir")
    source = open_faiss_gallery(index_dir, read_only=True) if to == "milvus" else open_milvus_gallery(milvus)
    with source:
        config = source.config
        if to == "milvus":
            target = create_milvus_gallery(milvus, config.dim, config.metric, config.fingerprint)
        else:
            target = create_faiss_gallery(index_dir, config.dim, method=index_method, metric=config.metric,
                                          fingerprint=config.fingerprint)
        with target:
            try:
                return {"from": source.describe(), "to": target.describe(), **migrate_gallery(source, target)}
            except BaseException:
                _remove_target(target, index_dir)
                raise


def _remove_target(target, index_dir):
    if target.backend == "milvus":
        target.drop()
    else:
        shutil.rmtree(index_dir, ignore_errors=True)
