"""The ``hpo`` command line: the only place that prints and turns errors into exit codes."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hpo.errors import USER_ERRORS

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("hpo")


# --------------------------------------------------------------------------- plumbing


def _setup_logging(verbose: bool) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    worker = os.environ.get("HPO_WORKER_INDEX")
    tag = f"[w{worker}] " if worker else ""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {tag}%(message)s", datefmt="%H:%M:%S", force=True)
    for noisy in ("optuna", "timm", "urllib3", "huggingface_hub", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import optuna

    # Our workers log one line per trial outcome themselves; Optuna's own per-trial warnings
    # (with tracebacks for recorded failures) would repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class HpoGroup(click.Group):
    """Turns user errors into ``Error: ...`` with exit code 2; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            raise UserError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted; running trials were recorded as failed.", err=True)
            ctx.exit(130)
        except click.UsageError as e:
            # one line, like every other error, instead of click's usage block
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            raise UserError(f"{e.format_message().rstrip('.')} (see '{where} --help')") from None


class UserError(click.ClickException):
    """Printed as ``Error: ...`` without the usage text (the command line itself was fine)."""

    exit_code = 2


def _float_range(text: str, name: str) -> tuple[float, float]:
    try:
        if ".." in text:
            lo, hi = text.split("..", 1)
            return float(lo), float(hi)
        v = float(text)
        return v, v
    except ValueError:
        raise click.BadParameter(f"{text!r} is not LOW..HIGH (e.g. 1e-5..3e-3)",
                                 param_hint=name) from None


def _int_range(text: str, name: str) -> tuple[int, int]:
    try:
        if ".." in text:
            lo, hi = text.split("..", 1)
            return int(lo), int(hi)
        return int(text), int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not LOW..HIGH with integers (e.g. 0..3)",
                                 param_hint=name) from None


def parse_duration(text: str | None, name: str = "--time-limit") -> float | None:
    """``90``, ``90s``, ``30m``, ``2h`` -> seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m or 2h",
                                 param_hint=name) from None
    if value <= 0:
        raise click.BadParameter(f"{text!r} must be positive", param_hint=name)
    return value


def _sizes(text: str) -> tuple[int, ...]:
    try:
        items = text.replace(" ", "").split(",")
        if any(not s for s in items):
            raise ValueError(text)
        return tuple(int(s) for s in items)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of sizes (e.g. 28,64)",
                                 param_hint="--image-size") from None


STORAGE_HELP = ("Study storage: postgresql://user@host/db, sqlite:///file.db or a journal file "
                "(default: $HPO_STORAGE, else ./hpo.journal).")


def storage_option(f: F) -> F:
    return click.option("--storage", envvar="HPO_STORAGE", default=None, metavar="URL",
                        help=STORAGE_HELP)(f)


def study_options(f: F) -> F:
    """The flags that define a study, shared by ``hpo run`` and ``hpo study create``."""
    opts = [
        click.option("--data", required=True, metavar="PATH|NAME",
                     help="MedMNIST .npz, image folder, or MedMNIST name (breastmnist, "
                          "breastmnist_64) looked up in $HPO_DATA_DIR."),
        click.option("--model", required=True, metavar="NAME", help="Any timm model name."),
        click.option("--weights", default=None, metavar="FILE|none",
                     help="Local weights (.safetensors/.pth); 'none' for random init. Default: "
                          "$HPO_WEIGHTS_DIR/<model>.*, else the model hub."),
        click.option("--epochs", type=int, default=10, show_default=True),
        click.option("--trials", type=int, default=30, show_default=True,
                     help="Finished trials for the whole study (all workers)."),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--metric", default="accuracy", show_default=True,
                     help="accuracy, balanced_accuracy or auroc (validation, maximised)."),
        click.option("--pruner", default="hyperband", show_default=True,
                     help="hyperband, median, sha or none."),
        click.option("--sampler", default="tpe", show_default=True, help="tpe or random."),
        click.option("--lr", "lr_range", default="1e-5..3e-3", show_default=True,
                     help="Learning-rate range (log scale)."),
        click.option("--freeze-depth", "depth_range", default=None, metavar="LOW..HIGH",
                     help="Frozen backbone stages to search (default: the model's full range)."),
        click.option("--aug", "aug_range", default="0..1", show_default=True,
                     help="Augmentation-strength range within 0..1."),
        click.option("--image-size", "image_sizes", default=None, metavar="S[,S...]",
                     help="Image sizes to search (default: the data's size), e.g. 28,64,96."),
        click.option("--hflip/--no-hflip", default=True, show_default=True,
                     help="Allow horizontal flips in augmentation."),
        click.option("--vflip/--no-vflip", default=False, show_default=True,
                     help="Allow vertical flips in augmentation."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--compute", default="auto", show_default=True,
                     help="auto (measure on CPU; mixed precision + channels-last on CUDA), "
                          "fp32, channels_last, amp or amp+channels_last."),
        click.option("--artifacts", default=None, metavar="DIR",
                     help="Checkpoint folder (default: beside the storage file, or "
                          "./hpo-artifacts for servers; $HPO_ARTIFACTS)."),
        click.option("--heartbeat-interval", type=int, default=20, show_default=True,
                     help="Seconds between heartbeats of running trials (database stores)."),
        click.option("--grace-period", type=int, default=60, show_default=True,
                     help="A trial silent this long is failed and retried."),
        click.option("--max-retries", type=int, default=1, show_default=True,
                     help="Retries of a trial whose worker died or was preempted."),
        click.option("--time-limit", "study_time_limit", default=None, metavar="DURATION",
                     help="No new trials after this long from study creation (30m, 2h)."),
        click.option("--keep-checkpoints", type=int, default=3, show_default=True,
                     help="Keep the checkpoint files of the K best trials only."),
        click.option("--allow-data-issues", is_flag=True,
                     help="Create the study even if `hpo data check` finds leakage across "
                          "splits, unreadable files or empty classes."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config_from(p: dict[str, Any]) -> Any:
    from hpo.config import StudyConfig
    from hpo.space import SearchSpace

    space = SearchSpace(
        lr=_float_range(p["lr_range"], "--lr"),
        freeze_depth=_int_range(p["depth_range"], "--freeze-depth") if p["depth_range"] else None,
        aug_strength=_float_range(p["aug_range"], "--aug"),
        image_sizes=_sizes(p["image_sizes"]) if p["image_sizes"] else (),
    )
    return StudyConfig(data=p["data"], model=p["model"], weights=p["weights"],
                       epochs=p["epochs"], batch_size=p["batch_size"], trials=p["trials"],
                       metric=p["metric"], pruner=p["pruner"], sampler=p["sampler"],
                       seed=p["seed"], hflip=p["hflip"], vflip=p["vflip"], space=space,
                       heartbeat_interval=p["heartbeat_interval"],
                       grace_period=p["grace_period"], max_retries=p["max_retries"],
                       time_limit=parse_duration(p["study_time_limit"]),
                       keep_checkpoints=p["keep_checkpoints"], compute=p["compute"])


def _storage(url: str | None) -> str:
    from storage import resolve_storage_url

    return resolve_storage_url(url)


# --------------------------------------------------------------------------- commands


@click.group(cls=HpoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="hpo")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Tune pretrained image classifiers on small medical datasets with Optuna."""
    _setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


@main.command()
@study_options
@storage_option
@click.option("--study", "study_name", default=None, help="Study name (default: DATA-MODEL).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes on this machine.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--out", default=None, metavar="DIR", help="Export the best trial here.")
@click.pass_context
def run(ctx: click.Context, storage: str | None, study_name: str | None, workers: int,
        device: str, out: str | None, **params: Any) -> None:
    """Create or resume a study, run local workers until the budget is spent, export the best."""
    from hpo.export import _check_out_dir, export_trial
    from hpo.launcher import Launcher, local_slots
    from hpo.study import create_or_resume, default_study_name

    if device not in ("auto", "cpu", "cuda"):
        raise click.BadParameter(f"{device!r} is not auto, cpu or cuda", param_hint="--device")
    if out:
        from pathlib import Path

        _check_out_dir(Path(out))
    url = _storage(storage)
    config = _config_from(params)
    slots = local_slots(workers, device)
    name = study_name if study_name is not None else default_study_name(config.data,
                                                                          config.model)
    loaded, created = create_or_resume(url, name, config, params["artifacts"],
                                       params["allow_data_issues"])
    from hpo.progress import progress_of
    from storage import redact

    p = progress_of(loaded.study, loaded.config.trials)
    verb = "Created" if created else f"Resuming ({p.finished} trials finished)"
    click.echo(f"{verb} study {name!r} in {redact(url)}; {workers} worker(s), "
               f"budget {loaded.config.trials} trials", err=True)
    launcher = Launcher(url, name, slots, ctx.obj["verbose"])
    failed = launcher.run()
    _print_best(url, name)
    if launcher.interrupted:
        click.echo("Stopped: running trials were failed and queued for retry; run the same "
                   "command again to resume.", err=True)
        sys.exit(130)
    if failed:
        click.echo(f"Warning: {failed} worker slot(s) gave up; see the log above.", err=True)
    if out:
        result = export_trial(url, name, out, artifacts=params["artifacts"])
        _print_export(result)
    if failed:
        sys.exit(1)


def _print_best(url: str, name: str) -> None:
    from hpo.progress import progress_of
    from hpo.study import load_study

    loaded = load_study(url, name)
    p = progress_of(loaded.study, loaded.config.trials)
    click.echo(p.line(loaded.config.metric, 0).rsplit(",", 1)[0])
    if p.best_trial is None:
        return
    t = loaded.study.best_trial
    val = t.user_attrs.get("hpo.val_metrics", {})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in t.params.items())
    click.echo(f"Best trial {t.number}: val {shown} (epoch {t.user_attrs.get('hpo.best_epoch')})"
               f"; {params}")


def _print_export(result: Any) -> None:
    cfg = result.config
    click.echo(f"Exported trial {result.trial} to {result.out}")
    for split in ("val", "test"):
        m = cfg.get(f"{split}_metrics")
        if m:
            click.echo(f"  {split:<4} " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))


@main.group()
def study() -> None:
    """Create, list and inspect studies."""


@study.command("create")
@click.argument("name")
@study_options
@storage_option
def study_create(name: str, storage: str | None, **params: Any) -> None:
    """Create study NAME (validated against its data and model) without running it."""
    from hpo.study import create_study
    from storage import redact

    url = _storage(storage)
    loaded = create_study(url, name, _config_from(params), params["artifacts"],
                          params["allow_data_issues"])
    click.echo(f"Created study {name!r} in {redact(url)} (budget {loaded.config.trials} "
               f"trials); start workers with: hpo worker --storage {shlex.quote(redact(url))} "
               f"--study {shlex.quote(name)}")


@study.command("list")
@storage_option
def study_list(storage: str | None) -> None:
    """List the studies in a storage."""
    import optuna

    from storage import open_storage

    url = _storage(storage)
    summaries = optuna.get_all_study_summaries(open_storage(url, create=False),
                                               include_best_trial=True)
    if not summaries:
        click.echo("No studies.")
    for s in sorted(summaries, key=lambda s: s.study_name):
        best = f"best {s.best_trial.value:.4f}" if s.best_trial and s.best_trial.value \
            is not None else "no complete trial"
        click.echo(f"{s.study_name}\t{s.n_trials} trials\t{best}")


@study.command("show")
@click.argument("name")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def study_show(name: str, storage: str | None, as_json: bool) -> None:
    """Show a study's settings, progress and best trial."""
    from dataclasses import asdict

    from hpo.progress import progress_of
    from hpo.study import load_study

    url = _storage(storage)
    loaded = load_study(url, name)
    p = progress_of(loaded.study, loaded.config.trials)
    if as_json:
        click.echo(json.dumps({"config": json.loads(loaded.config.to_json()),
                               "progress": asdict(p)}, indent=2))
        return
    cfg = json.loads(loaded.config.to_json())
    space = cfg.pop("space")
    for k, v in cfg.items():
        click.echo(f"{k}: {v}")
    if space.get("freeze_depth") is None:
        space["freeze_depth"] = "the model's full range"
    if not space.get("image_sizes"):
        space["image_sizes"] = "the data's size"
    click.echo("space: " + ", ".join(f"{k} {v}" for k, v in space.items()))
    _print_best(url, name)


@study.command("enqueue")
@click.argument("name")
@click.argument("params", nargs=-1, required=True, metavar="KEY=VALUE...")
@storage_option
def study_enqueue(name: str, params: tuple[str, ...], storage: str | None) -> None:
    """Queue a known configuration (e.g. lr=1e-3 freeze_depth=2 aug_strength=0.3
    image_size=64); it runs exactly once, before new samples. Unset keys are sampled."""
    from hpo.study import enqueue

    values: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="PARAMS")
        values[key.strip()] = value.strip()
    number = enqueue(_storage(storage), name, values)
    click.echo(f"Queued {', '.join(f'{k}={v}' for k, v in values.items())} in study {name!r} "
               f"(trial {number})")


@main.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback unless you ask otherwise).")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--artifacts", default=None, metavar="DIR",
              help="Checkpoint folder (default: the one the storage's studies use).")
def dashboard(storage: str | None, host: str, port: int, artifacts: str | None) -> None:
    """optuna-dashboard on the study storage, with trial checkpoints downloadable."""
    from hpo.dashboard import serve

    url = _storage(storage)
    serve(url, host, port, artifacts,
          on_start=lambda where: click.echo(f"optuna-dashboard at {where} (Ctrl-C to stop)",
                                            err=True))


@main.command()
@storage_option
@click.option("--study", "study_name", required=True)
@click.option("--out", default="report.html", show_default=True, metavar="FILE")
def report(storage: str | None, study_name: str, out: str) -> None:
    """One self-contained HTML page about a study (works offline)."""
    from hpo.report import write_report

    path = write_report(_storage(storage), study_name, out)
    click.echo(f"Wrote {path}")


@main.group()
def data() -> None:
    """Check data before tuning on it."""


@data.command("check")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--metric", default="accuracy", show_default=True,
              help="The metric you plan to tune (for advice on imbalance).")
def data_check(path: str, as_json: bool, metric: str) -> None:
    """Counts per split and class, unreadable files, empty classes, duplicates within and
    across splits (exact and near), imbalance, mixed sizes. Exit 1 on blocking problems."""
    from trainers.datacheck import check_data

    report = check_data(path)
    if as_json:
        click.echo(json.dumps(report.to_dict(metric), indent=2))
    else:
        click.echo(f"{report.source}: {len(report.classes)} classes")
        width = max((len(c) for c in report.classes), default=0)
        for split, per in report.counts.items():
            total = sum(per.values())
            click.echo(f"  {split:<5} {total:>6} images: " + ", ".join(
                f"{c:<{width}} {n}" for c, n in per.items()))
        for p in report.problems():
            click.echo(f"PROBLEM: {p}")
        for w in report.warnings(metric):
            click.echo(f"warning: {w}")
        if not report.problems() and not report.warnings(metric):
            click.echo("no problems found")
    if report.problems():
        sys.exit(1)


@main.group()
def db() -> None:
    """Check or upgrade the study database."""


def _print_status(status: Any, url: str) -> None:
    from storage import redact

    click.echo(f"storage: {status.location} ({status.kind})")
    if status.schema != "n/a":
        click.echo(f"schema: {status.schema} (database {status.schema_version or 'empty'}, "
                   f"this Optuna {status.expected_version})")
    if status.studies is not None:
        click.echo(f"studies: {status.studies}, trials: {status.trials}")
    if not status.ok:
        raise UserError(f"{status.location}: {status.advice(redact(url))}")


@db.command("check")
@storage_option
def db_check(storage: str | None) -> None:
    """Is the storage reachable, is its schema current, how much does it hold?"""
    from storage import check_db

    url = _storage(storage)
    _print_status(check_db(url), url)


@db.command("upgrade")
@storage_option
def db_upgrade(storage: str | None) -> None:
    """Upgrade the database schema to this Optuna's (wraps Optuna's migration)."""
    from storage import upgrade_db

    url = _storage(storage)
    _print_status(upgrade_db(url), url)
    click.echo("schema is current")


@main.command()
@storage_option
@click.option("--study", "study_name", required=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--trials", type=int, default=None, help="Stop this worker after N trials.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for this process.")
@click.option("--artifacts", default=None, metavar="DIR", help="Override the checkpoint folder.")
@click.option("--time-limit", default=None, metavar="DURATION",
              help="Start no new trial after this long (30m, 2h).")
@click.option("--verbose", is_flag=True, hidden=True)
def worker(storage: str | None, study_name: str, device: str, trials: int | None,
           threads: int | None, artifacts: str | None, time_limit: str | None,
           verbose: bool) -> None:
    """Run trials of an existing study until its budget is spent."""
    from hpo.worker import run_worker

    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    summary = run_worker(_storage(storage), study_name, device, trials, threads, artifacts,
                         parse_duration(time_limit))
    log.info("worker done (%s): %d trials (%d complete, %d pruned, %d failed)",
             summary.stopped_by, summary.ran, summary.complete, summary.pruned, summary.failed)


@main.command()
@storage_option
@click.option("--study", "study_name", required=True)
@click.option("--gpus", default="all", show_default=True,
              help="GPUs to use: all, none, or a list such as 0,1.")
@click.option("--workers-per-gpu", type=int, default=1, show_default=True,
              help="Trials running at once on each GPU (small images rarely fill one).")
@click.option("--cpu-workers", type=int, default=0, show_default=True,
              help="Additional CPU-only workers.")
@click.option("--time-limit", default=None, metavar="DURATION",
              help="Workers start no new trial after this long.")
@click.pass_context
def launch(ctx: click.Context, storage: str | None, study_name: str, gpus: str,
           workers_per_gpu: int, cpu_workers: int, time_limit: str | None) -> None:
    """Start one worker per GPU slot on this machine; restart crashed ones; stop cleanly."""
    from hpo.launcher import Launcher, plan_slots

    url = _storage(storage)
    slots = plan_slots(None if gpus == "none" else gpus, workers_per_gpu, cpu_workers)
    click.echo(f"Launching {len(slots)} worker(s): {', '.join(s.label for s in slots)}",
               err=True)
    gave_up = Launcher(url, study_name, slots, ctx.obj["verbose"],
                       parse_duration(time_limit)).run()
    _print_best(url, study_name)
    if gave_up:
        raise UserError(f"{gave_up} worker slot(s) gave up after repeated crashes; see the log")


@main.command()
@storage_option
@click.option("--study", "study_name", required=True)
@click.option("--out", required=True, metavar="DIR", help="New folder for the export.")
@click.option("--trial", type=int, default=None, help="Trial number (default: the best).")
@click.option("--artifacts", default=None, metavar="DIR", help="Override the checkpoint folder.")
@click.option("--device", default="cpu", show_default=True)
def export(storage: str | None, study_name: str, out: str, trial: int | None,
           artifacts: str | None, device: str) -> None:
    """Export a trial's checkpoint (weights.safetensors + config.json) with test metrics."""
    from hpo.export import export_trial

    _print_export(export_trial(_storage(storage), study_name, out, trial, artifacts, device))


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
def predict(folder: str, inputs: tuple[str, ...], device: str, as_json: bool) -> None:
    """Classify INPUTS (images, folders, or a .npz test split) with an exported model."""
    from hpo.predict import as_rows
    from hpo.predict import predict as run_predict

    result = run_predict(folder, list(inputs), device)
    for row in as_rows(result):
        if as_json:
            click.echo(json.dumps(row))
        else:
            probs = " ".join(f"{p:.4f}" for p in row["probs"])
            click.echo(f"{row['input']}\t{row['class']}\t{probs}")
    metrics = result.metrics()
    if metrics:
        click.echo("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), err=True)


if __name__ == "__main__":
    main()
