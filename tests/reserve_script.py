"""Drives reserved workers in a fresh process, whose threads the test controls.

Usage: python reserve_script.py SCENARIO. Prints one JSON object on stdout.
Scenarios:

- ``adopted``: reserve two workers, let a pool take them, run one task each;
- ``threaded``: the same with a second thread running, so nothing is forked;
- ``unused``: reserve two workers that no pool takes, then release them;
- ``signals``: a forked worker under the parent's SIGTERM handler; SIGINT
  must leave it running and SIGTERM must end it;
- ``orphaned``: reserve two, let a pool take one, print the pids, then die
  by SIGKILL without releasing anything.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time

import pool_tasks
from imgflow.executors.pool import (
    Outcome,
    WorkerPool,
    release_reserved_workers,
    reserve_workers,
)


def run_tasks(pool: WorkerPool, count: int) -> list[tuple[str, int]]:
    assert pool.wait_ready()
    for task in range(count):
        pool.submit(task, None)
    values = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        for completion in pool.poll(0.2):
            assert completion.outcome is Outcome.OK, completion
            values.append(tuple(completion.value))
    return values


def main(scenario: str) -> dict[str, object]:
    pool_tasks.origin = "forked"
    if scenario == "threaded":
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
    if scenario == "signals":
        signal.signal(signal.SIGTERM, lambda *_: None)
    forked = reserve_workers(2)
    if scenario == "unused":
        pids = [p.pid for p in multiprocessing.active_children()]
        release_reserved_workers()
        alive = [p.pid for p in multiprocessing.active_children()]
        return {"forked": forked, "pids": pids, "alive_after": alive}
    if scenario == "orphaned":
        pool = WorkerPool(1, pool_tasks.report_origin)
        run_tasks(pool, 1)
        pids = [p.pid for p in multiprocessing.active_children()]
        print(json.dumps({"forked": forked, "pids": pids}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    pool = WorkerPool(2, pool_tasks.report_origin)
    try:
        values = run_tasks(pool, 2)
        result: dict[str, object] = {
            "forked": forked,
            "origins": sorted({origin for origin, _ in values}),
        }
        if scenario == "signals":
            process = next(
                p for p in multiprocessing.active_children() if p.pid == pool.pids()[0]
            )
            os.kill(process.pid, signal.SIGINT)
            time.sleep(0.5)
            result["after_sigint"] = process.is_alive()
            os.kill(process.pid, signal.SIGTERM)
            process.join(10)
            result["after_sigterm"] = process.exitcode
        return result
    finally:
        pool.terminate()
        release_reserved_workers()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
