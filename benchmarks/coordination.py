"""Coordination cost: N worker processes run a no-training objective (10 intermediate reports
per trial, Hyperband pruning) against one study, on PostgreSQL and on the embedded journal file.
Reports finished trials/s, p50/p99 latency of ask, report+should_prune and tell, and errors.

The unpaced rows flood the store (every process calls it back to back: its capacity, and the
latency under saturation). The paced rows are a fleet: 32 processes whose "epochs" take
--epoch-s seconds each (a sleep standing in for GPU training), and give the storage time per
trial and its share of a 60-second trial under that load.

    python benchmarks/coordination.py [--quick] [--postgres URL] [--procs 1,4,16,32]
                                      [--fleet 32] [--epoch-s 2]

Without --postgres a throwaway server is started from the installed binaries (as the tests do).
Writes benchmarks/results/coordination.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import at_least, positive_ints  # noqa: E402
from _timing import REPORTS, timed_trial  # noqa: E402

from storage import open_storage  # noqa: E402


def _failed(e: BaseException) -> dict[str, Any]:
    """A worker's result when it never ran a trial."""
    return {"ask": [], "report": [], "tell": [], "per_trial": [], "errors": 1, "done": 0,
            "window": 0.0, "error": repr(e)}


def _worker(url: str, study_name: str, seconds: float, epoch_s: float,
            queue: mp.Queue, start: Any, offset_s: float = 0.0) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ask: list[float] = []
    report: list[float] = []
    tell: list[float] = []
    per_trial: list[float] = []
    errors, done = 0, 0
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url),
                                  sampler=optuna.samplers.TPESampler(constant_liar=True),
                                  pruner=optuna.pruners.HyperbandPruner(1, REPORTS))
    except Exception as e:  # noqa: BLE001 - counted, not raised: the benchmark reports errors
        queue.put(_failed(e))
        start.abort()
        return
    # Every process starts calling the store at once, after all have started up (32 Python
    # start-ups on two cores take seconds; they would otherwise blur the first trials).
    try:
        start.wait(timeout=300)
    except threading.BrokenBarrierError as e:  # another process failed to load the study
        queue.put(_failed(e))
        return
    began = time.monotonic()
    # A running fleet's epochs end at spread-out times, not all at once: paced processes
    # start offset across one epoch instead of as a herd.
    time.sleep(offset_s)
    deadline = began + seconds
    while time.monotonic() < deadline:
        try:
            per_trial.append(timed_trial(study, ask, report, tell, epoch_s))
            done += 1
        except Exception:  # noqa: BLE001
            errors += 1
    queue.put({"ask": ask, "report": report, "tell": tell, "per_trial": per_trial,
               "errors": errors, "done": done, "window": time.monotonic() - began})


def _ms(xs: list[float], q: int) -> float | None:
    if len(xs) < 2:
        return None
    return round(1000 * statistics.quantiles(xs, n=100)[q - 1], 1)


def run(url: str, procs: int, seconds: float, epoch_s: float = 0.0) -> dict[str, object]:
    name = f"coord-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    queue: mp.Queue = mp.Queue()
    start = mp.Barrier(procs)
    workers = [mp.Process(target=_worker,
                          args=(url, name, seconds, epoch_s, queue, start, epoch_s * i / procs))
               for i in range(procs)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 300) for _ in workers]
    for w in workers:
        w.join()
    elapsed = max(float(r["window"]) for r in results) or 1.0  # the shared measuring window
    merged: dict[str, list[float]] = {k: [x for r in results for x in r[k]]
                                      for k in ("ask", "report", "tell")}
    per_trial = [x for r in results for x in r["per_trial"]]
    per_trial_ms = round(1000 * statistics.fmean(per_trial), 1) if per_trial else None
    done = sum(int(r["done"]) for r in results)
    return {"procs": procs, "epoch_s": epoch_s, "trials": done,
            "trials_per_s": round(done / elapsed, 2),
            "errors": sum(int(r["errors"]) for r in results),
            **{f"{k}_p50_ms": _ms(v, 50) for k, v in merged.items()},
            **{f"{k}_p99_ms": _ms(v, 99) for k, v in merged.items()},
            "per_trial_ms": per_trial_ms,
            "share_of_60s_trial_pct": (round(per_trial_ms / 600, 3)
                                       if per_trial_ms is not None else None)}


HEADER = (f"{'store':<11}{'procs':>6}{'epoch s':>8}{'trials':>7}{'trials/s':>9}{'errors':>7}"
          f"{'ask p50/p99 ms':>17}{'report p50/p99':>16}{'tell p50/p99':>14}{'ms/trial':>9}"
          f"{'% of 60 s':>10}")


def _table_line(r: dict[str, Any]) -> str:
    def pair(k: str) -> str:
        return f"{r[k + '_p50_ms']}/{r[k + '_p99_ms']}"

    return (f"{r['store']:<11}{r['procs']:>6}{r['epoch_s']:>8}{r['trials']:>7}"
            f"{r['trials_per_s']:>9}{r['errors']:>7}{pair('ask'):>17}{pair('report'):>16}"
            f"{pair('tell'):>14}{r['per_trial_ms']!s:>9}{r['share_of_60s_trial_pct']!s:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 s per flooding setting, 20 s per fleet (under 3 minutes)")
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--procs", default="1,4,16,32")
    parser.add_argument("--fleet", type=int, default=32, help="processes in the paced rows")
    parser.add_argument("--epoch-s", type=float, default=2.0,
                        help="seconds per simulated epoch in the paced rows")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 30.0
    # Long enough that each paced process finishes a few trials (pruned ones are shorter).
    fleet_seconds = (1.0 if args.quick else 4) * args.epoch_s * REPORTS
    counts = positive_ints("--procs", args.procs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    at_least("--fleet", args.fleet, 1)
    at_least("--epoch-s", args.epoch_s, 0.1)
    rows = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.postgres
        if url is None:
            from tests.pg import start_postgres

            (Path(tmp) / "pg").mkdir()
            server = start_postgres(Path(tmp) / "pg")
            url = server.create_database("coordination")
        try:
            for store, store_url in (("postgresql", url),
                                     ("journal", str(Path(tmp) / "c.journal"))):
                for n, secs, epoch_s in ([(n, seconds, 0.0) for n in counts]
                                         + [(args.fleet, fleet_seconds, args.epoch_s)]):
                    row = {"store": store, **run(store_url, n, secs, epoch_s)}
                    rows.append(row)
                    print(_table_line(row), flush=True)
        finally:
            if server is not None:
                server.stop()
    out = Path(__file__).parent / "results" / "coordination.json"
    out.write_text(json.dumps({"seconds_per_setting": seconds, "reports_per_trial": REPORTS,
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    import _cli

    _cli.run(main)
