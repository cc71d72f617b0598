"""Helpers for tests that run real worker processes against a shared study."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from click.testing import CliRunner

from hpo.cli import main
from storage import open_storage


def create(url: str, name: str, data: Path, *extra: str, trials: int = 4, epochs: int = 2,
           size: int = 28) -> None:
    r = CliRunner().invoke(main, [
        "study", "create", name, "--allow-data-issues", "--data", str(data), "--model",
        "test_resnet", "--weights", "none", "--trials", str(trials), "--epochs", str(epochs),
        "--image-size", str(size),
        "--batch-size", "64", "--storage", url, *extra])
    assert r.exit_code == 0, r.output


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = open(log, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "hpo", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def spawn_worker(url: str, name: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(["worker", "--storage", url, "--study", name, "--device", "cpu",
                  "--threads", "1", *extra], log)


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float, logs: list[Path]) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            tails = "\n".join(log.read_text()[-2000:] for log in logs)
            raise AssertionError(f"workers did not finish in {timeout} s:\n{tails}") from None
    return codes
