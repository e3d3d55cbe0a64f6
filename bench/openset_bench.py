"""Open-set recognition, served: `python -m bench.openset_bench [--data DIR] [--held-out N]`.

The decision users get: for each pipeline, rec_system is started with `hub serving start`, its
gallery is filled over HTTP from DIR/gallery/<label>/*, and every photo of DIR/query_known/<label>/
and DIR/query_unknown/ is recognised. A query counts as recognised when its best region scores
at least the threshold (the request asks with score_thres -1 so that the scores of rejected
queries are seen too). A pipeline whose gallery calibrates itself (target_false_accept) is
reported twice from the same answers: at the threshold the gallery worked out (read from the
gallery's stats once it is up to date, with the calibration's estimated rates beside the
measured ones) and at its fixed fallback score_thres. Per pipeline, overall and per part of the
set (labels named `ukb-*` are instance-level objects, the others product classes):

  known right     known queries given their own label at the default threshold
  unknown reject  unknown queries with no recognised region at the default threshold
  closed top-1    known queries whose best region carries their own label, at any score
  AUROC           correct known queries against those that must be rejected (unknowns, and known
                  queries whose best label is wrong), by best score
  balanced at     the threshold maximising (known right + unknown rejected) / 2: what a deployer
                  calibrating on their own photos would pick
  95 % at         the lowest threshold that rejects at least 95 % of the unknowns, and the known
                  share it keeps

--held-out N checks, for each pipeline whose gallery calibrates itself, the estimate on labels it
was not fitted on: N times, the labels are split in halves (seeded, each part of the set halved);
each half in turn is the whole gallery, calibrated on itself, and is asked its own known queries,
the other half's known queries (unknown siblings: they must be rejected) and the unknown photos.

Prints markdown tables, writes bench/results/openset.json and openset_curve.png (both rates
against the threshold, one colour per pipeline).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from clas_system import Client
from harness.hub_server import HUB_MODULES, install_hub_modules, start_hub_server
from harness.payloads import SHARED_IMAGES, b64
from params.recognition import load_recognition_settings

from . import OLD_REC_DEFAULT, RESULTS

DEFAULT_DATA = SHARED_IMAGES.parent / "openset"
PIPELINES = {"default": {}, "default + verification": {"verification": "local_features"},
             "old default": OLD_REC_DEFAULT}
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


def fill_gallery(server, gallery):
    client = Client(server.url)
    for start in range(0, len(gallery), BATCH):
        chunk = gallery[start:start + BATCH]
        client.gallery("add", images=[str(p) for p, _ in chunk], labels=[label for _, label in chunk])


def settled_calibration(server, timeout_s=300.0):
    """The served gallery's calibration once it is worked out for the gallery as it is now
    (stats' "calibration"; a fixed threshold's at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        calibration = server.post("rec_system", {"gallery": "stats"})["results"]["stats"]["calibration"]
        if calibration.get("up_to_date", True) or time.monotonic() > deadline:
            return calibration
        time.sleep(1.0)


def scored_answers(server, known, unknown):
    """([(right label?, score, label)] of the known queries, [score] of the unknown ones)."""
    known_answers = recognise_all(server, [p for p, _ in known])
    unknown_answers = recognise_all(server, unknown)
    return ([(label == got, score, label) for (_, label), (got, score) in zip(known, known_answers)],
            [score for _, score in unknown_answers])


def threshold_rows(name, calibration, fixed, scored, unknown_scores):
    """The report of one pipeline's answers at each of its thresholds, with the curve."""
    thresholds = [("fixed", fixed)]
    if calibration.get("calibrated"):
        thresholds.insert(0, ("self-calibrated", calibration["score_thres"]))
    rows, curve = [], None
    for kind, threshold in thresholds:
        overall, curve = figures([(ok, s) for ok, s, _ in scored], unknown_scores, threshold)
        parts = {p: figures([(ok, s) for ok, s, label in scored if part(label) == p], unknown_scores,
                            threshold)[0] for p in sorted({part(label) for _, _, label in scored})}
        estimate = calibration if kind == "self-calibrated" else {}
        rows.append({"pipeline": name, "threshold": kind, "score_thres": threshold, **overall, "parts": parts,
                     "estimated_false_accept": estimate.get("estimated_false_accept"),
                     "estimated_known_right": estimate.get("estimated_known_right")})
    return rows, curve


def calibrates(init_args, scratch):
    """Whether a pipeline's gallery sets its own threshold (target_false_accept)."""
    return load_recognition_settings({}, {**init_args, "index_dir": str(scratch / "settings")}).target_false_accept \
        is not None


def run_pipeline(name, init_args, data_set, scratch):
    gallery, known, unknown = data_set
    fixed = load_recognition_settings({}, {**init_args, "index_dir": str(scratch / "settings")}).score_thres
    server = start_hub_server(scratch / "hub_home", scratch, timeout_s=600, modules={"rec_system": {
        "host": "127.0.0.1", "index_dir": str(scratch / name.replace(" ", "_")), **init_args}})
    try:
        fill_gallery(server, gallery)
        calibration = settled_calibration(server)
        scored, unknown_scores = scored_answers(server, known, unknown)
    finally:
        server.stop()
    rows, curve = threshold_rows(name, calibration, fixed, scored, unknown_scores)
    return [{**row, "init_args": init_args, "calibration": calibration} for row in rows], curve


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


def rate(value):
    return "-" if value is None else f"{value:.3f}"


def table(rows):
    lines = ["| pipeline | threshold | part | score_thres | known right (estimated) | unknown rejected "
             "(estimated false accept) | closed top-1 | AUROC | balanced at | 95 % rejected at (known right) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for part_name, figure in [("all", row), *row["parts"].items()]:
            balanced = (f"{figure['balanced_threshold']:.3f} ({figure['balanced'][0]:.3f} / "
                        f"{figure['balanced'][1]:.3f})" if "balanced" in figure else "-")
            strict = (f"{figure['threshold_95']:.3f} ({figure['known_right_95']:.3f})"
                      if "threshold_95" in figure else "-")
            known, rejected = f"{figure['known_right']:.3f}", f"{figure['unknown_rejected']:.3f}"
            if part_name == "all" and row["estimated_false_accept"] is not None:
                known += f" ({rate(row['estimated_known_right'])})"
                rejected += f" ({rate(row['estimated_false_accept'])})"
            lines.append(f"| {row['pipeline']} | {row['threshold']} | {part_name} ({figure['known']} known) | "
                         f"{row['score_thres']:.4f} | {known} | {rejected} | {figure['closed_top1']:.3f} | "
                         f"{figure['auroc'] or float('nan'):.3f} | {balanced} | {strict} |")
    return "\n".join(lines)


def split_labels(labels, seed):
    """Two halves of `labels`, each part of the set halved (seeded)."""
    rng = np.random.default_rng(seed)
    halves = ([], [])
    for part_name in sorted({part(label) for label in labels}):
        members = sorted(label for label in labels if part(label) == part_name)
        rng.shuffle(members)
        for index, label in enumerate(members):
            halves[(index + seed) % 2].append(label)
    return halves


def held_out_row(name, split, half, calibration, scored, siblings, unknown_scores):
    threshold = calibration["score_thres"]
    return {"pipeline": name, "split": split, "gallery": half, "calibrated": calibration["calibrated"], "score_thres": threshold,
            "estimated_false_accept": calibration.get("estimated_false_accept"),
            "estimated_known_right": calibration.get("estimated_known_right"),
            "known_right": rates([(ok, s) for ok, s, _ in scored], [], threshold)[0],
            "held_out_labels_accepted": float(np.mean([s >= threshold for s in siblings])),
            "unknown_photos_accepted": float(np.mean([s >= threshold for s in unknown_scores])),
            "known": len(scored), "held_out_queries": len(siblings), "unknown": len(unknown_scores)}


def run_held_out(name, data_set, splits, scratch):
    """A pipeline's calibration checked on labels it was not fitted on (module docstring)."""
    gallery, known, unknown = data_set
    server = start_hub_server(scratch / "hub_home", scratch, timeout_s=600, modules={"rec_system": {
        "host": "127.0.0.1", "index_dir": str(scratch / f"held_out_{name.replace(' ', '_')}"), **PIPELINES[name]}})
    rows = []
    try:
        for split in range(splits):
            for half, labels in zip("AB", split_labels(sorted({label for _, label in gallery}), split)):
                Client(server.url).gallery("remove", labels=sorted({label for _, label in gallery}))
                fill_gallery(server, [(p, label) for p, label in gallery if label in labels])
                calibration = settled_calibration(server)
                scored, unknown_scores = scored_answers(server, [(p, label) for p, label in known if label in labels],
                                                        unknown)
                siblings = scored_answers(server, [], [p for p, label in known if label not in labels])[1]
                rows.append(held_out_row(name, split, half, calibration, scored, siblings, unknown_scores))
                print(f"held out {split}{half}: {json.dumps(rows[-1])}", flush=True)
    finally:
        server.stop()
    return rows


def held_out_table(rows):
    lines = ["| pipeline | split | gallery half | score_thres | estimated false accept | held-out labels' queries "
             "accepted | unknown photos accepted | estimated known right | known right |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['pipeline']} | {row['split']} | {row['gallery']} | {row['score_thres']:.4f}"
                     f"{'' if row['calibrated'] else ' (fallback)'} | {rate(row['estimated_false_accept'])} | "
                     f"{row['held_out_labels_accepted']:.3f} ({row['held_out_queries']}) | "
                     f"{row['unknown_photos_accepted']:.3f} ({row['unknown']}) | "
                     f"{rate(row['estimated_known_right'])} | {row['known_right']:.3f} ({row['known']}) |")
    for name in dict.fromkeys(row["pipeline"] for row in rows):
        calibrated = [row for row in rows if row["calibrated"] and row["pipeline"] == name]
        if not calibrated:
            continue

        def mean(key):
            values = [row[key] for row in calibrated if row[key] is not None]
            return float(np.mean(values)) if values else float("nan")
        lines.append(f"| {name} | mean | {len(calibrated)} calibrated | {mean('score_thres'):.4f} | "
                     f"{mean('estimated_false_accept'):.3f} | {mean('held_out_labels_accepted'):.3f} | "
                     f"{mean('unknown_photos_accepted'):.3f} | {mean('estimated_known_right'):.3f} | "
                     f"{mean('known_right'):.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="gallery/<label>/, query_known/<label>/, "
                                                                   "query_unknown/ (default ../shared/openset)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"of {', '.join(PIPELINES)}")
    parser.add_argument("--per-label", type=int, default=None, help="at most this many photos per label")
    parser.add_argument("--unknown", type=int, default=None, help="at most this many unknown queries")
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="also N label splits: each half calibrated on itself, asked the other half's queries")
    parser.add_argument("--out", default=str(RESULTS), help="folder for openset.json and openset_curve.png")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    unknown_names = [n for n in names if n not in PIPELINES]
    if unknown_names:
        parser.error(f"unknown pipeline(s) {', '.join(unknown_names)}; known: {', '.join(PIPELINES)}")
    data_set = read_set(Path(args.data), args.per_label, args.unknown)
    rows, curves, held_out = [], {}, []
    with tempfile.TemporaryDirectory(prefix="openset_") as scratch:
        scratch = Path(scratch)
        install_hub_modules(scratch / "hub_home", [HUB_MODULES / "rec_system"])
        for name in names:
            pipeline_rows, curves[name] = run_pipeline(name, PIPELINES[name], data_set, scratch)
            rows += pipeline_rows
            for row in pipeline_rows:
                print(f"{name} ({row['threshold']} {row['score_thres']:.4f}): known right {row['known_right']:.3f}, "
                      f"unknown rejected {row['unknown_rejected']:.3f}", flush=True)
        for name in names if args.held_out else []:
            if calibrates(PIPELINES[name], scratch):
                held_out += run_held_out(name, data_set, args.held_out, scratch)
    print(f"\n{args.data}: {len(data_set[0])} gallery photos, {len(data_set[1])} known and "
          f"{len(data_set[2])} unknown queries\n")
    print(table(rows))
    if held_out:
        print("\nHeld-out labels: each half of the labels calibrated on itself, asked the other half's\n")
        print(held_out_table(held_out))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "openset.json").write_text(json.dumps({"data": args.data, "results": rows, "held_out": held_out},
                                                 indent=2) + "\n")
    draw_curves(curves, out / "openset_curve.png")


if __name__ == "__main__":
    main()
