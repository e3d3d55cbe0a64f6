"""The Prometheus metrics of the HTTP front and `GET /metrics`: one ServingMetrics per serving
process. The engine reports through clas_system.hooks; the front calls the methods here.

Imported only in a process that serves (see metrics_dir): with gunicorn workers every metric
is stored under the shared folder and /metrics, answered by any worker, reads all of them;
gauges say how workers' values combine (`multiprocess_mode`).
"""
import logging
import os
import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

from .. import hooks
from ..errors import WIRE_CODES
from .metrics_dir import shared_metrics_dir

log = logging.getLogger("clas_system")

SUCCESS = "ok"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REFRESH_EVERY_S = 5.0


def resident_bytes():
    """This process's resident set size, or None where /proc is not there (not Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def mark_worker_dead(pid):
    """gunicorn's master, when a worker exits: its live gauges (in flight, RSS...) stop counting."""
    multiprocess.mark_process_dead(pid)


class ServingMetrics:
    """Every metric of one serving process. `module_names` get their request counters at zero
    from the start; `module_states()` -> {module: readiness details} is sampled with RSS every few
    seconds for a gallery's items and its threshold's calibration."""

    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self, module_names, module_states):
        self.registry = CollectorRegistry()
        self.module_states = module_states
        self.requests = Counter("clas_requests", "Predict requests answered, by module and outcome "
                                "(a wire error code, or ok)", ["module", "code"], registry=self.registry)
        self.request_seconds = Histogram("clas_request_duration_seconds", "Predict requests from arrival to "
                                         "answer, by module", ["module"], buckets=LATENCY_BUCKETS_S,
                                         registry=self.registry)
        self.inference_seconds = Histogram("clas_inference_duration_seconds", "One model batch run, by the "
                                           "batched function", ["model"], buckets=LATENCY_BUCKETS_S,
                                           registry=self.registry)
        self.batch_size = Histogram("clas_batch_size", "Items in one model batch, by the batched function",
                                    ["model"], buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("clas_requests_in_flight", "Predict requests admitted: read, waiting or running",
                               multiprocess_mode="livesum", registry=self.registry)
        self.waiting = Gauge("clas_requests_waiting", "Admitted predict requests waiting for a request thread",
                             multiprocess_mode="livesum", registry=self.registry)
        self.overload_refusals = Counter("clas_overload_refusals", "Requests answered overloaded, by reason "
                                         "(queue_full, waited_too_long)", ["reason"], registry=self.registry)
        self.images_decoded = Counter("clas_images_decoded", "Input images decoded", registry=self.registry)
        self.received_bytes = Counter("clas_received_bytes", "Predict request body bytes received, by module",
                                      ["module"], registry=self.registry)
        self.gallery_size = Gauge("clas_gallery_items", "Items in a module's gallery", ["module"],
                                  multiprocess_mode="livemax", registry=self.registry)
        self.threshold = Gauge("clas_recognition_threshold", "The score_thres a module's recognition uses by "
                               "default", ["module"], multiprocess_mode="livemax", registry=self.registry)
        self.calibrated = Gauge("clas_recognition_calibrated", "1 when that threshold is the gallery's own "
                                "calibration, 0 when fixed or the fallback", ["module"], multiprocess_mode="livemin",
                                registry=self.registry)
        self.estimated_rate = Gauge("clas_recognition_estimated_rate", "The calibration's estimate from the gallery's "
                                    "own photos, by rate (false_accept, known_accept, known_right)",
                                    ["module", "rate"], multiprocess_mode="livemax", registry=self.registry)
        self.resident_memory = Gauge("clas_process_resident_memory_bytes", "Resident memory of a serving "
                                     "process", multiprocess_mode="liveall", registry=self.registry)
        self.model_precision = Gauge("clas_model_precision", "1 for the precision each model runs at in a "
                                     "serving process, and how it was chosen (setting, measured, only candidate)",
                                     ["model", "precision", "chosen_by"], multiprocess_mode="liveall",
                                     registry=self.registry)
        self.precision_batch_seconds = Gauge("clas_model_precision_batch_seconds", "cpu_precision auto: the "
                                             "fastest timed batch of a model at each precision it compared",
                                             ["model", "precision"], multiprocess_mode="liveall",
                                             registry=self.registry)
        for name in module_names:
            for code in (SUCCESS, *WIRE_CODES):
                self.requests.labels(name, code)
        hooks.IMAGE_DECODED.connect(self.images_decoded.inc)
        hooks.BATCH_RAN.connect(self.batch_ran)
        hooks.PRECISION_CHOSEN.connect(self.precision_chosen)

    def request_answered(self, module, code, seconds):
        self.requests.labels(module, code).inc()
        self.request_seconds.labels(module).observe(seconds)

    def batch_ran(self, model, size, seconds):
        self.batch_size.labels(model).observe(size)
        self.inference_seconds.labels(model).observe(seconds)

    def precision_chosen(self, model, described):
        self.model_precision.labels(model, described["precision"], described["chosen_by"]).set(1)
        for precision, batch_ms in described.get("batch_ms", {}).items():
            self.precision_batch_seconds.labels(model, precision).set(batch_ms / 1000)

    def refresh(self):
        """The sampled figures, now: RSS, gallery sizes and recognition thresholds."""
        rss = resident_bytes()
        if rss is not None:
            self.resident_memory.set(rss)
        for module, state in self.module_states().items():
            if "items" in state:
                self.gallery_size.labels(module).set(state["items"])
            if "calibration" in state:
                self.calibration_sampled(module, state["calibration"])

    def calibration_sampled(self, module, calibration):
        self.threshold.labels(module).set(calibration["score_thres"])
        self.calibrated.labels(module).set(1 if calibration["calibrated"] else 0)
        for rate in ("false_accept", "known_accept", "known_right"):
            estimate = calibration.get(f"estimated_{rate}")
            if estimate is not None:
                self.estimated_rate.labels(module, rate).set(estimate)

    def refresh_every(self, seconds=REFRESH_EVERY_S):
        """A daemon thread refreshing this process's figures, so that a scrape answered by another
        worker still sees this one's recent RSS and gallery size."""
        self.refresh()

        def refresh_forever():
            while True:
                time.sleep(seconds)
                try:
                    self.refresh()
                except Exception as err:  # noqa: BLE001 - a failed sample must not end the sampling
                    log.warning("sampling metrics failed: %s", err)

        threading.Thread(target=refresh_forever, name="metrics-refresh", daemon=True).start()

    def exposition(self):
        """The Prometheus text of this process, or of every worker when they share a folder."""
        self.refresh()
        if shared_metrics_dir() is None:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)
