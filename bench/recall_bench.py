"""Recognition recall benchmark: `python -m bench.recall_bench`.

Every shared image is a gallery item with its own label, embedded by a rec_system feature preset
(default: rec_system's default, efficientnet_lite2). Each image is then altered seven ways (centre crop
80%, scale 0.5, brightness +30%, JPEG re-encode at quality 40, horizontal flip, rotation by 10
degrees, Gaussian blur) and searched against the whole gallery. recall@1 is the share of altered
queries whose best hit is their own original; mAP is the mean average precision, which with one
relevant item per query is the mean of 1 / (rank of the original). Prints a table and writes
bench/results/recall.json (recall_<preset>.json for another --preset).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from clas_system.gallery import create_faiss_gallery
from clas_system.tasks.features import build_feature_extractor
from harness.payloads import SHARED_IMAGES
from params.recognition import load_recognition_settings

from . import RESULTS
SUFFIXES = (".jpg", ".jpeg", ".png")


def centre_crop(image, keep=0.8):
    height, width = image.shape[:2]
    top, left = int(height * (1 - keep) / 2), int(width * (1 - keep) / 2)
    return image[top:top + int(height * keep), left:left + int(width * keep)]


def half_scale(image):
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def brighter(image, gain=1.3):
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def rotated(image, degrees=10):
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def blurred(image):
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(image.shape[:2]) / 300)


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
    "flip": lambda image: png(image[:, ::-1]),
    "rotate 10 deg": lambda image: png(rotated(image)),
    "Gaussian blur": lambda image: png(blurred(image)),
}


def shared_images(root):
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)


def recall_at_1(extractor, gallery, names, queries):
    """Embed the altered images, search, and score each against its own original."""
    started = time.perf_counter()
    hits = gallery.search(extractor.embed_images(queries), k=len(names))
    seconds = time.perf_counter() - started
    misses = [{"query": name, "found": found[0].label, "score": round(found[0].score, 4)}
              for name, found in zip(names, hits) if found[0].label != name]
    own = [h.score for name, found in zip(names, hits) for h in found if h.label == name]
    ranks = [next(rank for rank, h in enumerate(found, 1) if h.label == name) for name, found in zip(names, hits)]
    return {"queries": len(names), "recall@1": 1 - len(misses) / len(names),
            "mAP": float(np.mean([1.0 / rank for rank in ranks])),
            "mean_own_score": float(np.mean(own)) if own else None,
            "mean_top2_margin": float(np.mean([found[0].score - found[1].score for found in hits])),
            "ms_per_query": 1000 * seconds / len(names), "misses": misses}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(SHARED_IMAGES), help="folder of images (searched recursively)")
    parser.add_argument("--preset", default=None, help="a rec_system feature preset (default: rec_system's)")
    parser.add_argument("--out", default=None, help="default: bench/results/recall.json")
    args = parser.parse_args(argv)
    feature = {} if args.preset is None else {"feature": {"preset": args.preset}}
    settings = load_recognition_settings(feature)
    preset = args.preset or "default"
    out = Path(args.out or RESULTS / ("recall.json" if args.preset is None else f"recall_{args.preset}.json"))

    paths = shared_images(Path(args.images))
    names = [str(p.relative_to(args.images)) for p in paths]
    with tempfile.TemporaryDirectory() as index_dir:
        extractor = build_feature_extractor(settings.feature)
        with create_faiss_gallery(index_dir, extractor.dim, method="Flat", metric="IP",
                            fingerprint=extractor.fingerprint) as gallery:
            gallery.add(extractor.embed_images([p.read_bytes() for p in paths]), names)
            originals = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
            rows = {name: recall_at_1(extractor, gallery, names, [alter(image) for image in originals])
                    for name, alter in ALTERATIONS.items()}

    total = sum(r["queries"] for r in rows.values())
    overall = sum(r["recall@1"] * r["queries"] for r in rows.values()) / total
    overall_map = sum(r["mAP"] * r["queries"] for r in rows.values()) / total
    print(f"recall@1 and mAP, {len(paths)} shared images as a gallery of their originals "
          f"(feature preset {preset}, IP on L2-normalised {extractor.dim}-d features, Flat index)")
    print(f"{'alteration':<18}{'queries':>8}{'recall@1':>10}{'mAP':>8}{'own score':>11}{'top-2 margin':>14}"
          f"{'ms/query':>10}")
    for name, r in rows.items():
        print(f"{name:<18}{r['queries']:>8}{r['recall@1']:>10.3f}{r['mAP']:>8.3f}{r['mean_own_score']:>11.4f}"
              f"{r['mean_top2_margin']:>14.4f}{r['ms_per_query']:>10.1f}")
    print(f"{'all':<18}{total:>8}{overall:>10.3f}{overall_map:>8.3f}")
    for name, r in rows.items():
        for miss in r["misses"]:
            print(f"  miss [{name}] {miss['query']} -> {miss['found']} ({miss['score']})")

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"feature_preset": preset, "fingerprint": extractor.fingerprint,
                               "gallery_images": names, "recall@1_all": overall, "mAP_all": overall_map,
                               "alterations": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
