"""Per-trial storage overhead: milliseconds per ask, per report (+ should_prune) and per tell,
on PostgreSQL and on the embedded stores, with the engine settings the workers use.

    python benchmarks/storage_overhead.py [--quick] [--trials 200]
                                          [--postgres postgresql://user:pw@host/db]

Without --postgres it starts a throwaway server from the installed binaries (like the tests).
Writes benchmarks/results/storage_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import at_least  # noqa: E402
from _timing import REPORTS, timed_trial  # noqa: E402

from storage import open_storage  # noqa: E402


def measure(url: str, trials: int) -> dict[str, float]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"bench-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(url), direction="maximize",
                                pruner=optuna.pruners.HyperbandPruner(1, REPORTS))
    ask: list[float] = []
    report: list[float] = []
    tell: list[float] = []
    for _ in range(trials):
        timed_trial(study, ask, report, tell)

    def ms(xs: list[float], q: float) -> float:
        return round(1000 * statistics.quantiles(xs, n=100)[int(q) - 1], 2)

    per_trial = (sum(ask) + sum(report) + sum(tell)) / trials
    return {"ask_p50_ms": ms(ask, 50), "ask_p99_ms": ms(ask, 99),
            "report_p50_ms": ms(report, 50), "report_p99_ms": ms(report, 99),
            "tell_p50_ms": ms(tell, 50), "tell_p99_ms": ms(tell, 99),
            "per_trial_ms": round(1000 * per_trial, 1),
            "share_of_60s_trial_pct": round(100 * per_trial / 60, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 trials per store (~1 minute)")
    args = parser.parse_args()
    if args.quick:
        args.trials = 50
    at_least("--trials", args.trials, 2)
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        url = args.postgres
        if url is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg import start_postgres

            (Path(tmp) / "pg").mkdir()
            server = start_postgres(Path(tmp) / "pg")
            url = server.create_database("bench")
        try:
            results = {
                "postgresql": measure(url, args.trials),
                "journal": measure(str(Path(tmp) / "b.journal"), args.trials),
                "sqlite": measure(f"sqlite:///{Path(tmp) / 'b.db'}", args.trials),
            }
        finally:
            if server is not None:
                server.stop()
    print(f"{'store':<12}{'ask p50/p99':>16}{'report p50/p99':>18}{'tell p50/p99':>16}"
          f"{'ms/trial':>10}{'% of 60 s':>11}")
    for name, r in results.items():
        print(f"{name:<12}{r['ask_p50_ms']:>8}/{r['ask_p99_ms']:<7}"
              f"{r['report_p50_ms']:>9}/{r['report_p99_ms']:<8}"
              f"{r['tell_p50_ms']:>8}/{r['tell_p99_ms']:<7}{r['per_trial_ms']:>10}"
              f"{r['share_of_60s_trial_pct']:>11}")
    out = Path(__file__).parent / "results" / "storage_overhead.json"
    out.write_text(json.dumps({"trials": args.trials, "reports_per_trial": REPORTS,
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    import _cli

    _cli.run(main)
