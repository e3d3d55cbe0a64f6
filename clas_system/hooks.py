"""Plain callbacks the engine fires with plain values, for an outer layer to count (the serving
metrics); the engine itself knows nothing of what listens.

    IMAGE_DECODED()                        one input image decoded
    BATCH_RAN(model, size, seconds)        one model batch: the batched function's name, items, run time
    PRECISION_CHOSEN(model, described)     a model loaded in this process runs at described["precision"]
                                           (a dict: precision, chosen_by, and what auto measured)
"""


class Hook:
    """Callbacks connected by whoever listens; calling the hook calls each of them in turn."""

    def __init__(self):
        self._callbacks = []

    def connect(self, callback):
        self._callbacks.append(callback)

    def disconnect(self, callback):
        self._callbacks.remove(callback)

    def __call__(self, *args):
        for callback in self._callbacks:
            callback(*args)


IMAGE_DECODED = Hook()
BATCH_RAN = Hook()
PRECISION_CHOSEN = Hook()
