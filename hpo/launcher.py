"""Run K worker processes on this machine and watch the study until its budget is spent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from hpo.progress import ProgressView, progress_of
from hpo.study import load_study

log = logging.getLogger(__name__)

POLL_S = 2.0
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    device: str
    threads: int
    cuda_visible: str | None = None


def plan_slots(workers: int, device: str) -> list[WorkerSlot]:
    """CPU: split the cores between workers. CUDA: round-robin over visible GPUs."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    if device in ("cuda", "auto"):
        import torch

        gpus = torch.cuda.device_count()
        if gpus:
            return [WorkerSlot(i, "cuda", threads, str(i % gpus)) for i in range(workers)]
        if device == "cuda":
            from hpo.errors import HpoError

            raise HpoError("--device cuda but no CUDA GPU is visible; use --device cpu")
    return [WorkerSlot(i, "cpu", threads) for i in range(workers)]


def _worker_command(storage_url: str, study: str, slot: WorkerSlot, verbose: bool) -> list[str]:
    cmd = [sys.executable, "-m", "hpo", "worker", "--storage", storage_url, "--study", study,
           "--device", slot.device, "--threads", str(slot.threads)]
    return cmd + (["--verbose"] if verbose else [])


def run_local_workers(storage_url: str, study_name: str, workers: int, device: str,
                      verbose: bool = False) -> int:
    """Start ``workers`` processes, show progress until they exit; returns failed worker count."""
    loaded = load_study(storage_url, study_name)
    slots = plan_slots(workers, device)
    procs: list[subprocess.Popen[bytes]] = []
    for slot in slots:
        env = dict(os.environ, OMP_NUM_THREADS=str(slot.threads),
                   HPO_WORKER_INDEX=str(slot.index))
        if slot.cuda_visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible
        procs.append(subprocess.Popen(_worker_command(storage_url, study_name, slot, verbose),
                                      env=env))
    view = ProgressView(loaded.config.metric)
    try:
        while any(p.poll() is None for p in procs):
            view.update(progress_of(loaded.study, loaded.config.trials))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    finally:
        view.update(progress_of(loaded.study, loaded.config.trials))
        view.close()
    return sum(1 for p in procs if p.returncode not in (0, None))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Ask workers to stop (their running trials are recorded as FAIL), then insist."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
