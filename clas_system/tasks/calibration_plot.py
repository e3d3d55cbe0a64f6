"""`clas-gallery calibrate --plot`: a gallery's genuine and impostor scores as a PNG (OpenCV only).

Against the threshold: the share of genuine rows at or above it (known photos accepted, solid
green), and of impostor rows (unknown siblings accepted, solid red; photos given with --unknown
among them); vertical lines at the chosen threshold (blue) and the fallback (grey).
"""
import cv2
import numpy as np

WIDTH, HEIGHT, MARGIN = 720, 440, 50
GREEN, RED, BLUE, GREY, BLACK = (0, 150, 0), (0, 0, 200), (200, 80, 0), (150, 150, 150), (0, 0, 0)


def accepted_share(scores, thresholds):
    """For each threshold, the share of finite `scores` at or above it."""
    scores = np.sort(np.asarray(scores, np.float64)[np.isfinite(scores)])
    if not len(scores):
        return np.zeros(len(thresholds))
    return 1.0 - np.searchsorted(scores, thresholds, side="left") / len(scores)


def draw_calibration(genuine, impostor, threshold, fallback, path):
    """Write the picture to `path` (PNG)."""
    finite = np.concatenate([np.asarray(genuine, np.float64), np.asarray(impostor, np.float64), [threshold, fallback]])
    finite = finite[np.isfinite(finite)]
    low, high = float(finite.min()) - 0.02, float(finite.max()) + 0.02
    thresholds = np.linspace(low, high, 400)
    canvas = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    cv2.rectangle(canvas, (MARGIN, MARGIN), (WIDTH - MARGIN, HEIGHT - MARGIN), BLACK, 1)

    def x_of(t):
        return int(MARGIN + (t - low) / (high - low) * (WIDTH - 2 * MARGIN))

    def y_of(share):
        return int(HEIGHT - MARGIN - share * (HEIGHT - 2 * MARGIN))

    for scores, colour in ((genuine, GREEN), (impostor, RED)):
        points = np.array([[x_of(t), y_of(s)] for t, s in zip(thresholds, accepted_share(scores, thresholds))],
                          np.int32)
        cv2.polylines(canvas, [points], False, colour, 2, cv2.LINE_AA)
    for value, colour in ((fallback, GREY), (threshold, BLUE)):
        cv2.line(canvas, (x_of(value), MARGIN), (x_of(value), HEIGHT - MARGIN), colour, 1, cv2.LINE_AA)
    legend = [(f"known photos accepted ({len(genuine)})", GREEN),
              (f"unknown siblings accepted ({len(impostor)})", RED),
              (f"threshold {threshold:.4f}", BLUE), (f"fallback {fallback:.4f}", GREY)]
    for row, (text, colour) in enumerate(legend):
        cv2.putText(canvas, text, (WIDTH - MARGIN - 300, MARGIN + 20 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    colour, 1, cv2.LINE_AA)
    cv2.putText(canvas, f"score threshold {low:.2f} .. {high:.2f}; share accepted 0 .. 1", (MARGIN, HEIGHT - 16),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, BLACK, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"cannot write {path}")
