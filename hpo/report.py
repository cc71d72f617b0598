"""``hpo report``: one self-contained HTML page about a study, built from Optuna's own plots
(plotly, with plotly.js inlined once, so the page works offline)."""

from __future__ import annotations

import datetime
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import optuna.visualization as vis
from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.export import ATTR_EXPORTS
from hpo.objective import failure_reason
from hpo.paths import check_output_location, write_error
from hpo.study import load_study
from storage.fs import make_folders, remove_new_folders

log = logging.getLogger(__name__)

SLICE_PARAMS = ("lr", "freeze_depth", "aug_strength")
GENERATOR = "<title>hpo report: "  # in every page this module writes; marks one safe to replace
TOP_K = 10

PLOTS: list[tuple[str, str, Callable[[optuna.Study], Any]]] = [
    ("history", "Optimisation history", vis.plot_optimization_history),
    ("intermediate", "Learning curves (intermediate values; pruned trials end early)",
     vis.plot_intermediate_values),
    ("importance", "Parameter importances", vis.plot_param_importances),
    ("parallel", "Parallel coordinates", vis.plot_parallel_coordinate),
    ("slice", "Slices: learning rate, freeze depth, augmentation strength",
     lambda s: vis.plot_slice(s, params=[p for p in SLICE_PARAMS
                                         if any(p in t.params for t in s.trials)])),
    ("timeline", "Trial states over time", vis.plot_timeline),
]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f4f4f4; } .muted { color: #777; } section { margin: 2rem 0; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r.values()) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(storage_url: str, study_name: str) -> str:
    loaded = load_study(storage_url, study_name)
    study, config = loaded.study, loaded.config
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise HpoError(f"study {study_name!r} has no complete trial yet; run workers first")
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    best = study.best_trial
    exports = study.user_attrs.get(ATTR_EXPORTS, {})
    exported = exports.get(str(best.number))
    best_rows = [{"trial": best.number, f"val {config.metric}": best.value,
                  **best.params, "best epoch": (best.user_attrs.get("hpo.best_epoch", -1) + 1),
                  "images/s": best.user_attrs.get("hpo.images_per_s", "")}]
    test_html = (_table([{"split": "test", **exported["test_metrics"]}]) +
                 f"<p class='muted'>exported to {html.escape(exported['out'])}</p>"
                 if exported and exported.get("test_metrics") else
                 "<p class='muted'>not exported yet: <code>hpo export --study "
                 f"{html.escape(study_name)} --out DIR</code> computes test metrics once</p>")
    top = sorted(complete, key=lambda t: -(t.value or 0.0))[:TOP_K]
    top_rows = [{"trial": t.number, f"val {config.metric}": t.value, **t.params,
                 "epochs": t.user_attrs.get("hpo.epochs_run", ""),
                 "seconds": t.user_attrs.get("hpo.seconds", "")} for t in top]
    failed = [{"trial": t.number, "reason": failure_reason(t, trials) or "unknown"}
              for t in trials if t.state == TrialState.FAIL]
    sections = []
    first = True
    for key, title, make in PLOTS:
        try:
            fig = make(study)
        except Exception as e:  # e.g. importances need at least two varied complete trials
            sections.append(f"<section id='plot-{key}' data-plot='{key}'><h2>{title}</h2>"
                            f"<p class='muted'>not available: {html.escape(str(e))}</p>"
                            "</section>")
            continue
        fig.update_layout(height=450)
        div = fig.to_html(full_html=False, include_plotlyjs=first, div_id=f"fig-{key}")
        first = False
        sections.append(f"<section id='plot-{key}' data-plot='{key}'><h2>{title}</h2>{div}"
                        "</section>")
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{GENERATOR}{html.escape(study_name)}</title><style>{STYLE}</style></head><body>
<h1>Study {html.escape(study_name)}</h1>
<p>{html.escape(config.model)} on {html.escape(config.data)}; metric: validation
{html.escape(config.metric)}; pruner {html.escape(config.pruner)}; {summary}
(budget {config.trials}). <span class="muted">Generated {now}.</span></p>
<section id="best"><h2>Best trial</h2>{_table(best_rows)}{test_html}</section>
<section id="top"><h2>Top {len(top)} trials</h2>{_table(top_rows)}</section>
{''.join(sections)}
<section id="failed"><h2>Failed trials</h2>{_table(failed)}</section>
</body></html>
"""


def write_report(storage_url: str, study_name: str, out: str | Path) -> Path:
    out = Path(out).expanduser()
    if out.is_dir():
        raise HpoError(f"--out {out} is a folder; pass a file name such as report.html")
    if out.exists() and not _is_report(out):
        raise HpoError(f"--out {out} exists and is not an hpo report; pass a new file name "
                       "(nothing was overwritten)")
    check_output_location(out, "--out")
    text = build_report(storage_url, study_name)
    tmp = out.with_name(out.name + ".part")
    created: list[Path] = []
    try:
        created = make_folders(out.parent)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        remove_new_folders(created)
        raise write_error(out, "--out", e) from e
    return out


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a page this command wrote (safe to replace with a newer one)."""
    try:
        with path.open("rb") as f:
            return GENERATOR.encode() in f.read(4096)
    except OSError:
        return False
