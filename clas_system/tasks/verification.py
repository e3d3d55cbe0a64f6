"""Geometric verification with local features: what one global vector cannot tell apart.

An item's local features (OpenCV SIFT keypoints of its region, bounded in count and size) are
taken when it is added; a query region's are matched against its best few candidates' (Lowe's
ratio test), and the matches that one homography explains (RANSAC) are counted. The same
printed carton photographed twice gives tens to hundreds of such inliers; a different object
gives a handful. What the counts mean for a decision is not set here: `pair_features` gives one
row per (query, candidate) for a scorer fitted on the gallery's own pairs.

    kept = extract(region_rgb)                       # LocalFeatures, at most MAX_KEYPOINTS
    blob = to_bytes(kept); from_bytes(blob)          # what the gallery's side store keeps
    [verify(query_kept, kept_of(hit)) for hit in candidates]  # -> Verified per candidate
"""
import threading
from typing import NamedTuple

import cv2
import numpy as np

MAX_SIDE = 480  # a region is shrunk to this long side before keypoints are found
MAX_KEYPOINTS = 300  # the strongest ones kept
RATIO = 0.8  # Lowe's ratio test: the best match must be this much closer than the second
RANSAC_PX = 8.0  # reprojection error (pixels at MAX_SIDE) under which a match is an inlier
MIN_MATCHES = 8  # fewer ratio-test matches are not worth a homography: no inliers
DESCRIPTOR_SIZE = 128
FORMAT = b"LF1"


class LocalFeatures(NamedTuple):
    points: np.ndarray  # float16 [n, 2]: keypoint x, y in the region shrunk to MAX_SIDE
    descriptors: np.ndarray  # uint8 [n, 128]: SIFT descriptors (OpenCV's are whole numbers 0..255)

    @property
    def nbytes(self):
        return self.points.nbytes + self.descriptors.nbytes


class Verified(NamedTuple):
    matches: int  # ratio-test matches
    inliers: int  # of those, the ones one homography explains


NO_FEATURES = LocalFeatures(np.zeros((0, 2), np.float16), np.zeros((0, DESCRIPTOR_SIZE), np.uint8))
_local = threading.local()


def sift():
    """One SIFT detector per thread (OpenCV's are not safe to share)."""
    if not hasattr(_local, "sift"):
        _local.sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS)
    return _local.sift


def shrunk_gray(image):
    """An RGB region -> grayscale uint8 with its long side at most MAX_SIDE."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    scale = MAX_SIDE / max(gray.shape[:2])
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def extract(image):
    """An RGB region (HWC uint8) -> its LocalFeatures: at most MAX_KEYPOINTS, strongest first."""
    keypoints, descriptors = sift().detectAndCompute(shrunk_gray(image), None)
    if descriptors is None or not keypoints:
        return NO_FEATURES
    order = np.argsort([-k.response for k in keypoints], kind="stable")[:MAX_KEYPOINTS]
    points = np.array([keypoints[i].pt for i in order], np.float16)
    return LocalFeatures(points, np.clip(np.rint(descriptors[order]), 0, 255).astype(np.uint8))


def to_bytes(features):
    """LocalFeatures -> bytes: FORMAT, the count (uint16), the points, the descriptors."""
    count = np.array([len(features.points)], "<u2").tobytes()
    return FORMAT + count + features.points.astype("<f2").tobytes() + features.descriptors.tobytes()


def from_bytes(blob):
    """bytes from to_bytes -> LocalFeatures; ValueError when they are not that."""
    if not blob.startswith(FORMAT) or len(blob) < len(FORMAT) + 2:
        raise ValueError("not local features written by verification.to_bytes")
    count = int(np.frombuffer(blob, "<u2", 1, len(FORMAT))[0])
    start = len(FORMAT) + 2
    if len(blob) != start + count * (4 + DESCRIPTOR_SIZE):
        raise ValueError(f"local features of {count} keypoints should be {start + count * (4 + DESCRIPTOR_SIZE)} "
                         f"bytes, got {len(blob)}")
    points = np.frombuffer(blob, "<f2", 2 * count, start).reshape(count, 2).astype(np.float16)
    descriptors = np.frombuffer(blob, np.uint8, count * DESCRIPTOR_SIZE, start + 4 * count)
    return LocalFeatures(points, descriptors.reshape(count, DESCRIPTOR_SIZE))


def ratio_matches(query, candidate):
    """(query index, candidate index) pairs passing Lowe's ratio test, one per candidate keypoint
    (the closest): many query points on one candidate point would let a degenerate homography
    count them all."""
    if len(query.descriptors) < 2 or len(candidate.descriptors) < 2:
        return np.zeros((0, 2), np.int64)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors.astype(np.float32),
                                                candidate.descriptors.astype(np.float32), k=2)
    best = {}
    for m, n in (p for p in pairs if len(p) == 2):
        if m.distance < RATIO * n.distance and (m.trainIdx not in best or m.distance < best[m.trainIdx].distance):
            best[m.trainIdx] = m
    return np.array(sorted((m.queryIdx, m.trainIdx) for m in best.values()), np.int64).reshape(-1, 2)


def plausible(homography, points):
    """Whether a homography maps the bounding box of `points` to a convex quadrilateral of the same
    orientation (no fold, no mirror, nothing sent through infinity): what a photo of a flat or
    nearly flat object can do."""
    if homography is None:
        return False
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    mapped = np.hstack([corners, np.ones((4, 1), np.float32)]) @ homography.T
    if np.any(mapped[:, 2] <= 1e-6):
        return False
    quad = mapped[:, :2] / mapped[:, 2:]
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool(np.all(turns > 0))


def verify(query, candidate):
    """Match a query region's LocalFeatures against a candidate's; Verified(matches, inliers)."""
    pairs = ratio_matches(query, candidate)
    if len(pairs) < MIN_MATCHES:
        return Verified(len(pairs), 0)
    source = query.points[pairs[:, 0]].astype(np.float32)
    target = candidate.points[pairs[:, 1]].astype(np.float32)
    homography, mask = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PX)
    if mask is None or mask.sum() < 4 or not plausible(homography, source[mask.ravel() > 0]):
        return Verified(len(pairs), 0)
    return Verified(len(pairs), int(mask.sum()))
