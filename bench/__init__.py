"""Benchmarks, one run each, loopback only: `python -m bench.run` (serving throughput, `make
bench`), bench.soak (hours of mixed valid and hostile load), bench.rec_scaling (recognition across
processes and servers), bench.gallery_bench and bench.recall_bench (the gallery index), bench.openset_bench (open-set
recognition, served), bench.verification_cost (what local-feature verification costs a region),
bench.precision_bench (f32 / bf16 / INT8 raw on this CPU). What they
share with the tests (the server launcher, payloads, process stats, wrk, PaddleClas's reference)
is in harness/. Results are written under bench/results/."""
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# rec_system's default before open-set recognition (DINOv2 class token, plain cosine at 0.5,
# U²-Net-p at 320, the whole image beside every box, fp32): the baseline recognition benches report
OLD_REC_DEFAULT = {"feature": {"preset": "dinov2_vits14"}, "scoring": "plain", "score_thres": 0.5,
                   "large_box_share": None, "cpu_precision": "fp32", "detector": {"saliency": {"input_size": 320}}}
# rec_system's default when issue 23 asked for three times the speed (EfficientNet-Lite2 on five
# views, crowding at 0.435, U²-Net-p at 256, bf16 where the CPU has it, each model on every CPU
# of a lone process): the ratio rec_scaling reports
BEFORE_SPEED_REC_DEFAULT = {"detector": {"saliency": {"input_size": 256}}, "cpu_threads": os.cpu_count()}
