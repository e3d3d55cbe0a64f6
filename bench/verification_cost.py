"""What verification costs a region, in process: `python -m bench.verification_cost [--data DIR]`.

For known query photos of DIR (default ../shared/openset), in one run and in turn per photo: the
shipped feature extractor's embedding of the photo as one region (its five views), the region's
local features (tasks.verification.extract), and their verification against VERIFY_K gallery
items' kept features. Prints ms per region for each and verification's cost as a multiple of the
embedding's (the ratio is what holds across machines and loads), with the CPU and the load.
"""
import argparse
import time
from pathlib import Path

from clas_system.ops.decode import decode_image
from clas_system.tasks import verification
from clas_system.tasks.features import build_feature_extractor
from clas_system.tasks.verifier import VERIFY_K
from harness.process_stats import loadavg
from params.recognition import load_recognition_settings

from .openset_bench import DEFAULT_DATA, photos
from .precision_bench import cpu_named


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--queries", type=int, default=20, help="known query photos timed")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    data = Path(args.data)
    queries = [decode_image(p.read_bytes()) for d in sorted((data / "query_known").iterdir()) for p in photos(d)]
    queries = queries[::max(1, len(queries) // args.queries)][:args.queries]
    items = [verification.extract(decode_image(p.read_bytes()))
             for d in sorted((data / "gallery").iterdir()) for p in photos(d)][:VERIFY_K]
    extractor = build_feature_extractor(load_recognition_settings({}).feature)
    extractor.pool(extractor.embed_tensors(extractor.view_tensors(queries[0])))  # load and warm the model
    load_before = loadavg()
    spent = {"embed": 0.0, "extract": 0.0, "verify": 0.0}
    for _ in range(args.rounds):
        for image in queries:
            spent["embed"] += timed(lambda: extractor.pool(extractor.embed_tensors(extractor.view_tensors(image))))[1]
            features, seconds = timed(lambda: verification.extract(image))
            spent["extract"] += seconds
            spent["verify"] += timed(lambda: [verification.verify(features, item) for item in items])[1]
    regions = args.rounds * len(queries)
    ms = {name: 1000 * seconds / regions for name, seconds in spent.items()}
    print(f"{cpu_named()}; load average {load_before} before, {loadavg()} after; {regions} regions")
    print(f"| per region | embedding (5 views) | keypoints | verify {VERIFY_K} hits | verification / embedding |")
    print("|---|---|---|---|---|")
    print(f"| ms | {ms['embed']:.1f} | {ms['extract']:.1f} | {ms['verify']:.1f} | "
          f"{(ms['extract'] + ms['verify']) / ms['embed']:.2f}× |")


if __name__ == "__main__":
    main()
