"""A recognizer's live threshold: its gallery's own (tasks.calibration), worked out in a
background thread, never on a request's path.

    live = LiveCalibration(gallery, target_false_accept=0.05, weight=0.5, fallback=0.435)
    live.score_thres()  # the latest calibrated threshold; the fallback until the first is done
    live.state()        # what stats, /ready and /metrics report

The first call starts the first calibration; after that a call starts another when the
gallery's revision has moved, or when the latest is older than MAX_AGE_S (a Milvus gallery's
revision does not move for other servers' changes), but never sooner than MIN_INTERVAL_S after
the last one started, nor sooner than its duration / BUSY_SHARE: a gallery that keeps changing
costs calibrating at most a tenth of one core. Each one's cost is bounded by tasks.calibration's
sample caps. Each process (each gunicorn worker) works out its
own; the sample and the arithmetic are deterministic, so processes seeing the same gallery agree.
A calibration that fails (a gallery briefly unavailable) keeps the previous one and is retried
on the next call after MIN_INTERVAL_S.
"""
import logging
import os
import threading
import time

from ..errors import ClasSystemError
from .calibration import calibrate
from .verifier import NO_WEIGHT, calibrate_with_inliers

log = logging.getLogger("clas_system")

MIN_INTERVAL_S = 5.0
BUSY_SHARE = 0.1  # calibrations start at most this share of the time apart of how long the last one took
MAX_AGE_S = 300.0


class LiveCalibration:
    def __init__(self, gallery, target_false_accept, weight, fallback, clock=time.monotonic, verifier=None):
        self.gallery = gallery
        self.verifier = verifier  # tasks.verifier.Verifier: fit the inliers' weight with the threshold
        self._inlier_weight = NO_WEIGHT
        self.target_false_accept = target_false_accept
        self.weight = weight
        self.fallback = fallback
        self.clock = clock
        self._lock = threading.Lock()
        self._latest = None  # Calibration
        self._revision = None  # the gallery revision the latest was worked out at
        self._done_at = None
        self._started_at = None
        self._last_seconds = 0.0  # how long the last calibration took
        self._running_in = None  # pid of the process whose thread is calibrating

    def latest(self):
        """The latest Calibration (None before the first is done), starting a new one when due."""
        self._start_when_due()
        return self._latest

    def score_thres(self):
        latest = self.latest()
        return self.fallback if latest is None else latest.score_thres

    def inlier_weight(self):
        """The latest calibration's tasks.verifier.InlierWeight (NO_WEIGHT before the first)."""
        self._start_when_due()
        return self._inlier_weight

    def state(self):
        """The latest calibration as a dict, "up_to_date" when the gallery has not changed since."""
        self._start_when_due()
        with self._lock:
            latest, revision = self._latest, self._revision
        if latest is None:
            return {"score_thres": self.fallback, "calibrated": False, "fallback": self.fallback,
                    "target_false_accept": self.target_false_accept, "reason": "calibrating", "up_to_date": False}
        return {**latest.as_dict(), "up_to_date": revision == self.gallery.revision()}

    def _due(self, revision, now):
        if self._running_in == os.getpid():
            return False
        if self._started_at is not None and now - self._started_at < max(MIN_INTERVAL_S,
                                                                          self._last_seconds / BUSY_SHARE):
            return False
        return self._latest is None or revision != self._revision or now - self._done_at > MAX_AGE_S

    def _start_when_due(self):
        revision = self.gallery.revision()
        with self._lock:
            now = self.clock()
            if not self._due(revision, now):
                return
            self._running_in, self._started_at = os.getpid(), now
        threading.Thread(target=self._calibrate, args=(revision,), name="calibration", daemon=True).start()

    def _calibrate(self, revision):
        started = time.perf_counter()
        try:
            if self.verifier is None:
                calibration, inlier_weight = calibrate(self.gallery, self.target_false_accept, self.weight,
                                                       self.fallback), NO_WEIGHT
            else:
                calibration, inlier_weight = calibrate_with_inliers(self.gallery, self.verifier,
                                                                    self.target_false_accept, self.weight, self.fallback)
            with self._lock:
                self._latest, self._revision, self._done_at = calibration, revision, self.clock()
                self._inlier_weight = inlier_weight
        except ClasSystemError as err:
            log.warning("calibrating the gallery's threshold failed (keeping %s): %s",
                        self._latest.score_thres if self._latest else self.fallback, err)
            return
        finally:
            with self._lock:
                self._running_in, self._last_seconds = None, time.perf_counter() - started
        log.info("gallery threshold %.4f (%s) from %d items in %.2f s", calibration.score_thres,
                 "calibrated" if calibration.calibrated else calibration.reason, calibration.items,
                 time.perf_counter() - started)
