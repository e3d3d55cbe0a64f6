"""Open-set recognition, served: `python -m bench.openset_bench [--data DIR]`.

The decision users get: for each pipeline, rec_system is started with `hub serving start`, its
gallery is filled over HTTP from DIR/gallery/<label>/*, and every photo of DIR/query_known/<label>/
and DIR/query_unknown/ is recognised. A query counts as recognised when its best region scores
at least the pipeline's own default score_thres (the request asks with score_thres -1 so that the
scores of rejected queries are seen too). Per pipeline, overall and per part of the set (labels
named `ukb-*` are instance-level objects, the others product classes):

  known right     known queries given their own label at the default threshold
  unknown reject  unknown queries with no recognised region at the default threshold
  closed top-1    known queries whose best region carries their own label, at any score
  AUROC           correct known queries against those that must be rejected (unknowns, and known
                  queries whose best label is wrong), by best score
  balanced at     the threshold maximising (known right + unknown rejected) / 2: what a deployer
                  calibrating on their own photos would pick
  95 % at         the lowest threshold that rejects at least 95 % of the unknowns, and the known
                  share it keeps

Prints a markdown table, writes bench/results/openset.json and openset_curve.png (both rates
against the threshold, one colour per pipeline).
"""
import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from clas_system import Client
from harness.hub_server import HUB_MODULES, install_hub_modules, start_hub_server
from harness.payloads import SHARED_IMAGES, b64
from params.recognition import load_recognition_settings

from . import OLD_REC_DEFAULT, RESULTS

DEFAULT_DATA = SHARED_IMAGES.parent / "openset"
PIPELINES = {"default": {}, "old default": OLD_REC_DEFAULT}
SUFFIXES = (".jpg", ".jpeg", ".png")
BATCH = 8


def photos(folder):
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in SUFFIXES)


def read_set(data, per_label=None, unknown=None):
    """(gallery [(path, label)], known queries [(path, label)], unknown queries [path])."""
    def labelled(root):
        return [(p, d.name) for d in sorted(Path(root).iterdir()) if d.is_dir() for p in photos(d)[:per_label]]
    return labelled(data / "gallery"), labelled(data / "query_known"), photos(data / "query_unknown")[:unknown]


def part(label):
    return "instance objects" if label.startswith("ukb-") else "product classes"


def best_region(regions):
    """(label, score) of an image's best region, or (None, -inf) when it has none."""
    if not regions:
        return None, float("-inf")
    best = max(regions, key=lambda r: r["rec_scores"])
    return best["rec_docs"], float(best["rec_scores"])


def recognise_all(server, paths):
    answers = []
    for start in range(0, len(paths), BATCH):
        images = [b64(Path(p).read_bytes()) for p in paths[start:start + BATCH]]
        body = server.post("rec_system", {"images": images, "score_thres": -1.0, "return_k": 1})
        if body.get("status") != "000":
            raise RuntimeError(f"rec_system refused a query batch: {body.get('msg')}")
        answers += [best_region(regions) for regions in body["results"]["prediction"]]
    return answers


def auroc(positives, negatives):
    """P(a random positive scores above a random negative), ties counted half."""
    if not positives or not negatives:
        return None
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def rates(known, unknown, threshold):
    """(known right, unknown rejected) at `threshold`; known = [(right label?, score)], unknown = [score]."""
    right = np.mean([ok and score >= threshold for ok, score in known]) if known else float("nan")
    rejected = np.mean([score < threshold for score in unknown]) if unknown else float("nan")
    return float(right), float(rejected)


def figures(known, unknown, threshold):
    candidates = sorted({s for _, s in known if np.isfinite(s)} | {s + 1e-6 for s in unknown if np.isfinite(s)})
    curve = [(t, *rates(known, unknown, t)) for t in candidates]
    right, rejected = rates(known, unknown, threshold)
    result = {"known": len(known), "unknown": len(unknown), "known_right": right, "unknown_rejected": rejected,
              "closed_top1": float(np.mean([ok for ok, _ in known])) if known else None,
              "auroc": auroc([s for ok, s in known if ok], [s for ok, s in known if not ok] + list(unknown))}
    if curve and unknown:
        balanced = max(curve, key=lambda row: row[1] + row[2])
        strict = next((row for row in curve if row[2] >= 0.95), curve[-1])
        result.update(balanced_threshold=balanced[0], balanced=(balanced[1], balanced[2]),
                      threshold_95=strict[0], known_right_95=strict[1])
    return result, curve


def run_pipeline(name, init_args, data_set, scratch):
    gallery, known, unknown = data_set
    threshold = load_recognition_settings({}, {**init_args, "index_dir": str(scratch / "settings")}).score_thres
    server = start_hub_server(scratch / "hub_home", scratch, timeout_s=600, modules={"rec_system": {
        "host": "127.0.0.1", "index_dir": str(scratch / name.replace(" ", "_")), **init_args}})
    try:
        client = Client(server.url)
        for start in range(0, len(gallery), BATCH):
            chunk = gallery[start:start + BATCH]
            client.gallery("add", images=[str(p) for p, _ in chunk], labels=[label for _, label in chunk])
        known_answers = recognise_all(server, [p for p, _ in known])
        unknown_answers = recognise_all(server, unknown)
    finally:
        server.stop()
    scored = [(label == got, score, label) for (_, label), (got, score) in zip(known, known_answers)]
    unknown_scores = [score for _, score in unknown_answers]
    overall, curve = figures([(ok, s) for ok, s, _ in scored], unknown_scores, threshold)
    parts = {p: figures([(ok, s) for ok, s, label in scored if part(label) == p], unknown_scores, threshold)[0]
             for p in sorted({part(label) for _, label in known})}
    return {"pipeline": name, "init_args": init_args, "score_thres": threshold, **overall, "parts": parts}, curve


def draw_curves(curves, path):
    """Known right (solid) and unknown rejected (dotted) against the threshold, one colour each."""
    width, height, margin = 640, 420, 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    cv2.rectangle(canvas, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    colours = [(200, 80, 0), (0, 0, 200), (0, 150, 0)]
    finite = [t for curve in curves.values() for t, _, _ in curve if np.isfinite(t)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    def point(t, rate):
        x = margin + (t - low) / max(high - low, 1e-9) * (width - 2 * margin)
        return int(x), int(height - margin - rate * (height - 2 * margin))
    for (name, curve), colour in zip(curves.items(), colours):
        for index, style in ((1, 2), (2, 1)):
            points = [point(row[0], row[index]) for row in curve if np.isfinite(row[0])]
            for a, b in zip(points, points[1:]):
                cv2.line(canvas, a, b, colour, style, cv2.LINE_AA)
        cv2.putText(canvas, name, (margin + 8, margin + 18 + 18 * list(curves).index(name)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    cv2.putText(canvas, f"threshold {low:.2f} .. {high:.2f}; solid: known right, thin: unknown rejected",
                (margin, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), canvas)


def table(rows):
    lines = ["| pipeline | part | score_thres | known right | unknown rejected | closed top-1 | AUROC | "
             "balanced at | 95 % rejected at (known right) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for part_name, figure in [("all", row), *row["parts"].items()]:
            balanced = (f"{figure['balanced_threshold']:.3f} ({figure['balanced'][0]:.3f} / "
                        f"{figure['balanced'][1]:.3f})" if "balanced" in figure else "-")
            strict = (f"{figure['threshold_95']:.3f} ({figure['known_right_95']:.3f})"
                      if "threshold_95" in figure else "-")
            lines.append(f"| {row['pipeline']} | {part_name} ({figure['known']} known) | {row['score_thres']} | "
                         f"{figure['known_right']:.3f} | {figure['unknown_rejected']:.3f} | "
                         f"{figure['closed_top1']:.3f} | {figure['auroc'] or float('nan'):.3f} | {balanced} | "
                         f"{strict} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="gallery/<label>/, query_known/<label>/, "
                                                                   "query_unknown/ (default ../shared/openset)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"of {', '.join(PIPELINES)}")
    parser.add_argument("--per-label", type=int, default=None, help="at most this many photos per label")
    parser.add_argument("--unknown", type=int, default=None, help="at most this many unknown queries")
    parser.add_argument("--out", default=str(RESULTS), help="folder for openset.json and openset_curve.png")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    unknown_names = [n for n in names if n not in PIPELINES]
    if unknown_names:
        parser.error(f"unknown pipeline(s) {', '.join(unknown_names)}; known: {', '.join(PIPELINES)}")
    data_set = read_set(Path(args.data), args.per_label, args.unknown)
    rows, curves = [], {}
    with tempfile.TemporaryDirectory(prefix="openset_") as scratch:
        scratch = Path(scratch)
        install_hub_modules(scratch / "hub_home", [HUB_MODULES / "rec_system"])
        for name in names:
            row, curves[name] = run_pipeline(name, PIPELINES[name], data_set, scratch)
            rows.append(row)
            print(f"{name}: known right {row['known_right']:.3f}, unknown rejected {row['unknown_rejected']:.3f}",
                  flush=True)
    print(f"\n{args.data}: {len(data_set[0])} gallery photos, {len(data_set[1])} known and "
          f"{len(data_set[2])} unknown queries\n")
    print(table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "openset.json").write_text(json.dumps({"data": args.data, "results": rows}, indent=2) + "\n")
    draw_curves(curves, out / "openset_curve.png")


if __name__ == "__main__":
    main()
