"""How much search each strategy gets out of an epoch budget, on real data and real weights.

On BreastMNIST with ImageNet-pretrained MobileNetV2 (28 px; lr, freeze depth and augmentation
strength searched), each strategy spends the same number of training epochs:

  random           random search, no pruning
  tpe              TPE (multivariate, as hpo configures it), no pruning
  tpe+hyperband    TPE with each pruner hpo offers, configured as hpo configures them
  tpe+median
  tpe+sha

and records the best validation metric reached after every epoch spent (any trial's best
epoch: its weights are kept, so it is a model one could export). A strategy's curve is that
best-so-far averaged over the seeds (the expected best after E epochs). The target is random
search's expected best at the full budget; the table gives the epochs each strategy's curve
needed to reach it and the ratio random-epochs / strategy-epochs (above 1: fewer epochs than
random), plus, per seed, the epochs that seed's run needed ("-": not within the budget).
One seed's validation split (78 images on BreastMNIST) moves in steps of 1/78, so single
seeds tie or swap often; the averaged curve is the figure to read.
The study's queued default configuration is left out so that only the strategies differ.

    python benchmarks/search.py [--quick] [--seeds 3] [--budget 96] [--epochs 8] [--reuse]

Writes benchmarks/results/search.json (the curves too). ``--reuse`` keeps the runs already in
that file when its settings match and runs only the missing (strategy, seed) pairs, so
``--seeds 6 --reuse`` after a 3-seed run adds three seeds. Results are counted in epochs, so the
figures do not depend on the machine's speed or on other jobs running beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import at_least  # noqa: E402

from hpo.config import StudyConfig  # noqa: E402
from hpo.space import SearchSpace, sample  # noqa: E402
from trainers import Dataset, build_model, fine_tune, load_npz  # noqa: E402
from trainers.metrics import METRICS  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
STRATEGIES = {"random": ("random", "none"), "tpe": ("tpe", "none"),
              "tpe+hyperband": ("tpe", "hyperband"), "tpe+median": ("tpe", "median"),
              "tpe+sha": ("tpe", "sha")}


@dataclass
class Run:
    """One strategy on one seed: best-so-far after each epoch spent."""

    strategy: str
    seed: int
    curve: list[float] = field(default_factory=list)
    trials: int = 0
    pruned: int = 0

    @property
    def best(self) -> float:
        return self.curve[-1] if self.curve else float("nan")

    def epochs_to_reach(self, target: float) -> int | None:
        return first_reach(self.curve, target)


def run_strategy(strategy: str, seed: int, data: Dataset, base: StudyConfig, budget: int
                 ) -> Run:
    sampler_name, pruner_name = STRATEGIES[strategy]
    config = base.with_updates(sampler=sampler_name, pruner=pruner_name, seed=seed)
    _, info = build_model(config.model, data.num_classes, config.weights)
    bounds = config.bounds(data, info.stages)
    study = optuna.create_study(direction="maximize", sampler=config.make_sampler(seed),
                                pruner=config.make_pruner())
    run = Run(strategy, seed)
    best = float("-inf")

    def objective(trial: optuna.Trial) -> float:
        nonlocal best
        spent = False
        hp = sample(trial, bounds)
        spec = config.train_spec(seed * 10_000 + trial.number)

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            nonlocal best, spent
            value = metrics[config.metric]
            best = max(best, value)
            run.curve.append(best)
            if len(run.curve) >= budget:
                spent = True  # the budget ends mid-trial, as a wall-clock budget would
                return True
            trial.report(value, epoch)
            return trial.should_prune()

        result = fine_tune(data, spec, hp, "cpu", report=report)
        if spent:
            return result.best_metrics[config.metric]  # the last trial; nothing samples after
        if result.stopped_early:
            run.pruned += 1
            raise optuna.TrialPruned()
        return result.best_metrics[config.metric]

    while len(run.curve) < budget:
        study.optimize(objective, n_trials=1)
        run.trials += 1
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 24 epochs per strategy (under 3 minutes)")
    parser.add_argument("--data", default=str(SHARED / "data" / "breastmnist.npz"))
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--weights-dir", default=os.environ.get("HPO_WEIGHTS_DIR",
                                                                 str(SHARED / "weights")))
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--budget", type=int, default=None,
                        help="epochs per strategy and seed; default 96 (--quick: 24)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of a full trial; default 8 (--quick: 4)")
    parser.add_argument("--metric", default="accuracy", choices=METRICS)
    parser.add_argument("--reuse", action="store_true",
                        help="keep matching runs from the results file; run only missing seeds")
    args = parser.parse_args()
    # --quick sets the defaults; options given explicitly win
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.budget is None:
        args.budget = 24 if args.quick else 96
    if args.epochs is None:
        args.epochs = 4 if args.quick else 8
    at_least("--seeds", args.seeds, 1)
    at_least("--epochs", args.epochs, 1)
    at_least("--budget", args.budget, args.epochs)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HPO_WEIGHTS_DIR"] = args.weights_dir  # the product's own weights lookup
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING)
    data = load_npz(args.data)
    base = StudyConfig(data=args.data, model=args.model, epochs=args.epochs,
                       trials=args.budget // args.epochs, metric=args.metric,
                       space=SearchSpace())
    out = Path(__file__).parent / "results" / "search.json"
    settings = {"data": Path(args.data).name, "model": args.model, "metric": args.metric,
                "budget_epochs": args.budget, "epochs_per_trial": args.epochs, "image_size": 28}
    kept = previous_runs(out, settings) if args.reuse else {}
    started = time.time()
    wall = float(json.loads(out.read_text()).get("wall_s", 0.0)) if kept else 0.0
    runs: list[Run] = []
    for seed in range(args.seeds):
        for strategy in STRATEGIES:
            if (strategy, seed) in kept:
                runs.append(kept[(strategy, seed)])
                continue
            t = time.time()
            runs.append(run_strategy(strategy, seed, data, base, args.budget))
            r = runs[-1]
            print(f"seed {seed} {strategy:<14} best {r.best:.4f}  trials {r.trials:>3}  "
                  f"pruned {r.pruned:>3}  ({time.time() - t:.0f} s)", flush=True)
    summary = summarize(runs, args.seeds)
    print_table(summary, args)
    out.write_text(json.dumps({
        **settings, "seeds": args.seeds, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "wall_s": round(wall + time.time() - started, 1),
        "summary": summary,
        "runs": [{"strategy": r.strategy, "seed": r.seed, "trials": r.trials, "pruned": r.pruned,
                  "best": r.best, "curve": r.curve} for r in runs]}, indent=2) + "\n")
    print(f"wrote {out}")


def previous_runs(path: Path, settings: dict[str, object]) -> dict[tuple[str, int], Run]:
    """The runs of an earlier results file made with the same settings, by (strategy, seed)."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if any(old.get(k) != v for k, v in settings.items()):
        print(f"{path.name} has other settings; running every seed", flush=True)
        return {}
    return {(r["strategy"], r["seed"]): Run(r["strategy"], r["seed"], r["curve"], r["trials"],
                                            r["pruned"])
            for r in old["runs"] if len(r["curve"]) == settings["budget_epochs"]}


def mean_curve(runs: list[Run]) -> list[float]:
    """Best-so-far after each epoch, averaged over runs (all runs spend the same budget)."""
    return [statistics.fmean(points) for points in zip(*(r.curve for r in runs), strict=True)]


def first_reach(curve: list[float], target: float) -> int | None:
    """Epochs spent when ``curve`` (best so far per epoch) first reaches ``target``."""
    return next((spent for spent, best in enumerate(curve, start=1) if best >= target - 1e-9),
                None)


def summarize(runs: list[Run], seeds: int) -> dict[str, object]:
    by = {strategy: sorted((r for r in runs if r.strategy == strategy), key=lambda r: r.seed)
          for strategy in STRATEGIES}
    random_curve = mean_curve(by["random"])
    target = random_curve[-1]
    random_needed = first_reach(random_curve, target)
    strategies: dict[str, dict[str, object]] = {}
    for strategy, rs in by.items():
        curve = mean_curve(rs)
        needed = first_reach(curve, target)
        strategies[strategy] = {
            "best_mean": round(curve[-1], 4),
            "best_per_seed": [round(r.best, 4) for r in rs],
            "trials_per_seed": [r.trials for r in rs],
            "pruned_per_seed": [r.pruned for r in rs],
            "epochs_to_target": needed,
            "epochs_to_target_per_seed": [r.epochs_to_reach(target) for r in rs],
            "speedup_vs_random": (round(random_needed / needed, 2)
                                  if needed and random_needed else None),
            "mean_curve": [round(v, 4) for v in curve],
        }
    return {"target": round(target, 4), "seeds": seeds, "strategies": strategies}


def print_table(summary: dict[str, object], args: argparse.Namespace) -> None:
    print(f"\n{args.budget} epochs per strategy and seed, {args.epochs} per full trial, "
          f"{args.seeds} seed(s), val {args.metric}; target = random search's expected best "
          f"{summary['target']}")
    print(f"{'strategy':<15}{'best (mean)':>12}  {'trials':<14}{'epochs to target':>17}"
          f"{'x random':>9}  per seed")
    for strategy, s in summary["strategies"].items():  # type: ignore[attr-defined]
        trials = "/".join(str(t) for t in s["trials_per_seed"])
        seeds = "/".join("-" if n is None else str(n) for n in s["epochs_to_target_per_seed"])
        needed, ratio = s["epochs_to_target"], s["speedup_vs_random"]
        print(f"{strategy:<15}{s['best_mean']:>12}  {trials:<14}"
              f"{'-' if needed is None else needed:>17}{'-' if ratio is None else ratio:>9}"
              f"  {seeds}")


if __name__ == "__main__":
    import _cli

    _cli.run(main)
