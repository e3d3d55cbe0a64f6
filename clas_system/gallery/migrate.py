"""One gallery into another (faiss <-> milvus), checked by counts and identical top-1 answers.

    report = migrate_gallery(open_gallery("gallery/"), create_milvus_gallery(settings, dim, metric, fp))

Items keep their labels and docs; ids are the target's own (Milvus assigns them), so the
report carries the old -> new id mapping's size and the checks, not the ids. The target must be
new: migrating into a gallery that already holds items would mix two galleries.
"""
import numpy as np

from .errors import GalleryError

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
