"""`cpu_precision: auto`: the precision OpenVINO runs a model at, chosen by timing it.

Whether bf16 pays depends on the machine, not on a CPU flag: on an Intel Xeon with AVX512-BF16
and no AMX, bf16 ran every served model at ~0.6x of f32; on one with AMX it can be faster. So
auto compiles the model at each precision the CPU has, times each on the process's first real
batch tiled to the serving batch size (the serving thread count, in this very process: a
gunicorn worker measures under the same contention it serves under), and keeps the fastest.

The timing is bounded: one untimed run per candidate, then interleaved timed runs until
MEASURE_BUDGET_S is spent (at least MIN_TIMED_RUNS each, at most MAX_TIMED_RUNS), the
fastest run of each compared; fp32 stays unless another is at least MIN_SPEEDUP faster.

An INT8 model (an IR with FakeQuantize layers, as clas-quantize writes) runs its float parts at
fp32 under auto: with the bf16 hint the INT8 PULC model's probabilities moved by up to 0.53 on the
shared photos and 2 of 23 top-1 answers changed (fp32 hint: none).
"""
import dataclasses
import time

import numpy as np

from .model_files import is_quantized_ir

MEASURE_BUDGET_S = 2.0
MIN_TIMED_RUNS = 2
MAX_TIMED_RUNS = 8
# fp32 is the exact precision: another is kept only when it is at least this much faster, so a
# tie within timing noise (the text-line model: 26.9 against 25.3 ms) does not move the scores.
MIN_SPEEDUP = 1.1


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """What a model runs at and why: `chosen_by` is 'setting' (fp32/bf16 asked for), 'measured'
    (auto, `batch_ms` the fastest batch of each candidate) or 'only candidate' (auto where
    there is nothing to compare: no bf16 on this CPU, or a backend that runs only fp32)."""
    precision: str
    chosen_by: str
    batch_size: int = 0
    batch_ms: dict = dataclasses.field(default_factory=dict)

    def describe(self):
        """A JSON-ready dict for /ready and the log."""
        described = {"precision": self.precision, "chosen_by": self.chosen_by}
        if self.batch_ms:
            described.update(batch_size=self.batch_size, batch_ms=self.batch_ms)
        return described


def cpu_has_bf16():
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def candidate_precisions(backend, model_path=None):
    """The precisions `auto` compares for a model on `backend`."""
    if backend == "openvino" and cpu_has_bf16() and not (model_path and is_quantized_ir(model_path)):
        return ("fp32", "bf16")
    return ("fp32",)


def serving_batch(feeds, batch_size):
    """Each input of a (smaller) batch repeated along its first axis up to `batch_size` rows."""
    return {name: np.resize(array, (batch_size,) + array.shape[1:]) for name, array in feeds.items()}


def fastest_batch_seconds(predictors, feeds, budget_s=MEASURE_BUDGET_S):
    """{precision: predictor} run on `feeds` -> {precision: fastest timed run in seconds}."""
    for predictor in predictors.values():
        predictor.run(feeds)  # untimed: the first run of a compiled model sets up its buffers
    best = {name: float("inf") for name in predictors}
    deadline = time.perf_counter() + budget_s
    for round_index in range(MAX_TIMED_RUNS):
        if round_index >= MIN_TIMED_RUNS and time.perf_counter() > deadline:
            break
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.run(feeds)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def preferred(seconds):
    """{precision: seconds} -> the fastest, but fp32 unless that is at least MIN_SPEEDUP faster."""
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds["fp32"] >= seconds[fastest] * MIN_SPEEDUP else "fp32"


def measured_choice(predictors, feeds, batch_size):
    """(precision kept, PrecisionChoice) for {precision: predictor}, one of them fp32."""
    seconds = fastest_batch_seconds(predictors, serving_batch(feeds, batch_size))
    precision = preferred(seconds)
    return precision, PrecisionChoice(precision, "measured", batch_size,
                                      {name: round(s * 1000, 2) for name, s in seconds.items()})
