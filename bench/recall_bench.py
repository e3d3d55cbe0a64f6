"""Recognition recall benchmark: `python -m bench.recall_bench`.

Every shared image is a gallery item with its own label, embedded by rec_system's default feature
model (pplcnet_pulc_1280, as configured by default params). Each image is then altered four ways
(centre crop 80%, scale 0.5, brightness +30%, JPEG re-encode at quality 40) and searched; recall@1
is the share of altered queries whose best hit is their own original. Prints a table and writes
bench/results/recall.json.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from clas_system.features import build_feature_extractor
from clas_system.gallery import create_gallery
from params.recognition import load_recognition_settings

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results"
SUFFIXES = (".jpg", ".jpeg", ".png")


def centre_crop(image, keep=0.8):
    height, width = image.shape[:2]
    top, left = int(height * (1 - keep) / 2), int(width * (1 - keep) / 2)
    return image[top:top + int(height * keep), left:left + int(width * keep)]


def half_scale(image):
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def brighter(image, gain=1.3):
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def png(image):
    return cv2.imencode(".png", image)[1].tobytes()


def jpeg_q40(image):
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])[1].tobytes()


# Each alteration: BGR image -> encoded bytes (lossless PNG, except the JPEG re-encode itself).
ALTERATIONS = {
    "centre crop 80%": lambda image: png(centre_crop(image)),
    "scale 0.5": lambda image: png(half_scale(image)),
    "brightness +30%": lambda image: png(brighter(image)),
    "JPEG q=40": jpeg_q40,
}


def shared_images(root):
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)


def recall_at_1(extractor, gallery, names, queries):
    """Embed the altered images, search, and score each against its own original."""
    started = time.perf_counter()
    hits = gallery.search(extractor.embed_images(queries), k=2)
    seconds = time.perf_counter() - started
    misses = [{"query": name, "found": found[0].label, "score": round(found[0].score, 4)}
              for name, found in zip(names, hits) if found[0].label != name]
    own = [h.score for name, found in zip(names, hits) for h in found if h.label == name]
    return {"queries": len(names), "recall@1": 1 - len(misses) / len(names),
            "mean_own_score": float(np.mean(own)) if own else None,
            "mean_top2_margin": float(np.mean([found[0].score - found[1].score for found in hits])),
            "ms_per_query": 1000 * seconds / len(names), "misses": misses}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(IMAGES), help="folder of images (searched recursively)")
    parser.add_argument("--out", default=str(RESULTS / "recall.json"))
    args = parser.parse_args(argv)

    paths = shared_images(Path(args.images))
    names = [str(p.relative_to(args.images)) for p in paths]
    with tempfile.TemporaryDirectory() as index_dir:
        extractor = build_feature_extractor(load_recognition_settings({}).feature)
        with create_gallery(index_dir, extractor.dim, method="Flat", metric="IP",
                            fingerprint=extractor.fingerprint) as gallery:
            gallery.add(extractor.embed_images([p.read_bytes() for p in paths]), names)
            originals = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
            rows = {name: recall_at_1(extractor, gallery, names, [alter(image) for image in originals])
                    for name, alter in ALTERATIONS.items()}

    total = sum(r["queries"] for r in rows.values())
    overall = sum(r["recall@1"] * r["queries"] for r in rows.values()) / total
    print(f"recall@1, {len(paths)} shared images as a gallery of their originals "
          f"(feature model pplcnet_pulc_1280, IP on L2-normalised 1280-d features, Flat index)")
    print(f"{'alteration':<18}{'queries':>8}{'recall@1':>10}{'own score':>11}{'top-2 margin':>14}{'ms/query':>10}")
    for name, r in rows.items():
        print(f"{name:<18}{r['queries']:>8}{r['recall@1']:>10.3f}{r['mean_own_score']:>11.4f}"
              f"{r['mean_top2_margin']:>14.4f}{r['ms_per_query']:>10.1f}")
    print(f"{'all':<18}{total:>8}{overall:>10.3f}")
    for name, r in rows.items():
        for miss in r["misses"]:
            print(f"  miss [{name}] {miss['query']} -> {miss['found']} ({miss['score']})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"feature_model": "pplcnet_pulc_1280", "fingerprint": extractor.fingerprint,
                               "gallery_images": names, "recall@1_all": overall, "alterations": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
