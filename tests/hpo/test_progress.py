from __future__ import annotations

import io

from hpo.progress import Progress, ProgressView


def _p(complete: int, running: tuple[tuple[int, int], ...] = ()) -> Progress:
    return Progress(complete, 2, 1, len(running), 30, 0.91 if complete else None,
                    3 if complete else None, running, 250.0 if complete else None)


def test_line_shows_counts_best_epochs_and_speed() -> None:
    line = _p(5, ((7, 3), (8, 1))).line("accuracy", 75)
    assert "trials 7/30 finished (5 complete, 2 pruned, 1 failed, 2 running)" in line
    assert "best accuracy 0.9100 (trial 3)" in line and "1:15 elapsed" in line
    assert "t7@ep3 t8@ep1" in line and "250 img/s" in line
    assert "no complete trial yet" in _p(0).line("auroc", 0)


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_friendly_without_a_terminal() -> None:
    out = _Pipe()
    view = ProgressView("accuracy", out)
    view.update(_p(1))
    view.update(_p(1))  # unchanged: nothing printed
    view.update(_p(1, ((4, 2),)))  # a new trial started: printed
    view.update(Progress(1, 2, 1, 1, 30, 0.91, 3, ((4, 3),), 250.0))  # only an epoch tick
    view.update(_p(2))
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_live_line_on_a_terminal() -> None:
    out = _Tty()
    view = ProgressView("accuracy", out)
    view.update(_p(1), "workers 2/2 up")
    view.update(_p(1), "workers 2/2 up")
    view.close()
    assert out.getvalue().count("\r\x1b[2K") == 2 and "workers 2/2 up" in out.getvalue()
