"""wrk as the load generator: one C thread, so on a small machine it takes little of the CPU the
server under test needs. It POSTs pre-encoded bodies in rotation (wrk_rotate.lua) and counts
every answer that is not a success as bad."""
import json
import shutil
import subprocess
import time
from pathlib import Path

from .process_stats import CLOCK_TICKS, children_cpu_seconds, group_cpu_ticks, loadavg, machine_busy_ticks

WRK_SCRIPT = Path(__file__).with_name("wrk_rotate.lua")
CLIENTS = 8
JSON = "application/json"


def find_wrk():
    """The wrk executable, or None (`make system-packages` installs it)."""
    return shutil.which("wrk")


def write_bodies(folder, name, bodies):
    """One file per body and the list of them wrk_rotate.lua reads -> the list's path."""
    folder = Path(folder)
    paths = []
    for i, body in enumerate(bodies):
        paths.append(folder / f"{name}_{i}.json")
        paths[-1].write_bytes(body)
    body_list = folder / f"{name}.list"
    body_list.write_text("".join(f"{p}\n" for p in paths))
    return body_list


def run_wrk(wrk, url, body_list, seconds, clients=CLIENTS, content_type=JSON):
    """-> wrk_rotate.lua's summary: requests, duration_us, p50_us, p99_us, bad_answers, socket_errors."""
    done = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                           "-s", str(WRK_SCRIPT), url, "--", str(body_list), content_type],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}")
    return json.loads(lines[-1])


def served_row(wrk, server, module, bodies, body_list, seconds, warmup_seconds, content_type=JSON,
               images_per_request=1):
    """Check every body once, warm up, then one measured wrk run with the server's CPU and the
    machine's other load while it ran. Rates and CPU are per image."""
    for i, body in enumerate(bodies):
        answer = server.post_body(module, body, content_type=content_type)
        if answer.get("status") != "000" or len(answer["results"]["prediction"]) != images_per_request:
            raise RuntimeError(f"body {i} refused: {str(answer)[:300]}")
    url = server.predict_url(module)
    run_wrk(wrk, url, body_list, warmup_seconds, content_type=content_type)
    before = {"loadavg": loadavg(), "busy": machine_busy_ticks(), "server": group_cpu_ticks(server.pgid),
              "wrk": children_cpu_seconds(), "time": time.monotonic()}
    out = run_wrk(wrk, url, body_list, seconds, content_type=content_type)
    wall = time.monotonic() - before["time"]
    server_s = (group_cpu_ticks(server.pgid) - before["server"]) / CLOCK_TICKS
    wrk_s = children_cpu_seconds() - before["wrk"]
    busy_s = (machine_busy_ticks() - before["busy"]) / CLOCK_TICKS
    images = max(out["requests"] * images_per_request, 1)
    return {"img_per_s": images / (out["duration_us"] / 1e6), "p50_ms": out["p50_us"] / 1000,
            "p99_ms": out["p99_us"] / 1000, "server_cpu_ms_per_image": server_s * 1000 / images,
            "requests": out["requests"], "seconds": out["duration_us"] / 1e6,
            "bad_answers": out["bad_answers"], "socket_errors": out["socket_errors"],
            "loadavg_before": before["loadavg"], "wrk_cpu_cores": wrk_s / wall,
            "other_cpu_cores": max(0.0, busy_s - server_s - wrk_s) / wall}
