"""Work sent to the server with a bounded number of requests in flight, results in input order."""
from concurrent.futures import ThreadPoolExecutor


def ordered_bounded_map(function, items, workers):
    """function over items on `workers` threads; results in input order, at most 2 * workers
    submitted ahead, so a long input never piles up in memory."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def batched(items, size):
    """Lists of up to `size` items, in order, from any iterable (a video's frames as they come)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
