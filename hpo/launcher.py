"""Run worker processes on this machine: one per GPU slot (or CPU slot), restarted with backoff
when they crash, stopped cleanly on SIGINT/SIGTERM, watched in one live progress line."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.objective import ATTR_WORKER
from hpo.progress import ProgressView, progress_of
from hpo.study import LoadedStudy, load_study
from hpo.worker import fail_and_retry

log = logging.getLogger(__name__)

POLL_S = 1.0
VIEW_EVERY_S = 2.0
STOP_GRACE_S = 30.0
QUICK_CRASH_S = 60.0  # a worker that dies sooner than this after starting counts toward a loop
MAX_QUICK_CRASHES = 5
BACKOFF_S = (1, 2, 4, 8, 16, 30, 60)
USER_ERROR_EXIT = 2  # the CLI's exit code for bad input: restarting would not help


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    device: str
    threads: int
    cuda_visible: str | None = None

    @property
    def label(self) -> str:
        return f"w{self.index}" + (f"@gpu{self.cuda_visible}" if self.cuda_visible else "@cpu")


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def plan_slots(gpus: str | None, workers_per_gpu: int = 1, cpu_workers: int = 0
               ) -> list[WorkerSlot]:
    """``gpus``: "all", "0,2" or None (no GPU workers). Each GPU slot sees only its GPU
    (``CUDA_VISIBLE_DEVICES``); CPU slots share the cores."""
    if workers_per_gpu < 1:
        raise HpoError(f"--workers-per-gpu must be at least 1, but got {workers_per_gpu}")
    if cpu_workers < 0:
        raise HpoError(f"--cpu-workers must be >= 0, but got {cpu_workers}")
    ids: list[str] = []
    if gpus:
        count = _visible_gpus()
        if gpus == "all":
            ids = [str(i) for i in range(count)]
        else:
            ids = [g.strip() for g in gpus.split(",") if g.strip()]
            bad = [g for g in ids if not g.isdigit() or int(g) >= count]
            if bad:
                raise HpoError(f"--gpus {gpus}: GPU {bad[0]} is not visible here ({count} "
                               f"GPU(s): {', '.join(map(str, range(count))) or 'none'})")
        if not ids and cpu_workers == 0:
            raise HpoError("no CUDA GPU is visible on this machine; use --cpu-workers N "
                           "(or check the NVIDIA driver and CUDA_VISIBLE_DEVICES)")
    total = len(ids) * workers_per_gpu + cpu_workers
    if total == 0:
        raise HpoError("nothing to launch: pass --gpus and/or --cpu-workers N")
    cores = os.cpu_count() or 1
    threads = max(1, cores // total)
    slots = [WorkerSlot(i, "cuda", threads, gpu) for i, gpu in
             enumerate(g for g in ids for _ in range(workers_per_gpu))]
    slots += [WorkerSlot(len(slots) + i, "cpu", threads) for i in range(cpu_workers)]
    return slots


def local_slots(workers: int, device: str) -> list[WorkerSlot]:
    """``hpo run``: K workers over the visible GPUs (device auto/cuda), else on the CPU."""
    if workers < 1:
        raise HpoError(f"--workers must be at least 1, but got {workers}")
    if device in ("auto", "cuda"):
        count = _visible_gpus()
        if count:
            per_gpu = -(-workers // count)
            return plan_slots(",".join(str(i) for i in range(min(count, workers))), per_gpu)[
                :workers]
        if device == "cuda":
            raise HpoError("--device cuda but no CUDA GPU is visible; use --device cpu")
    return plan_slots(None, 1, workers)


@dataclass
class _Running:
    slot: WorkerSlot
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_crashes: int = 0
    restart_at: float | None = None
    done: bool = False
    gave_up: str | None = None
    restarts: int = 0
    history: list[int] = field(default_factory=list)


class Launcher:
    def __init__(self, storage_url: str, study_name: str, slots: list[WorkerSlot],
                 verbose: bool = False, time_limit: float | None = None) -> None:
        self.storage_url = storage_url
        self.study_name = study_name
        self.workers = [_Running(s) for s in slots]
        self.verbose = verbose
        self.time_limit = time_limit
        self.loaded: LoadedStudy = load_study(storage_url, study_name)
        self._stop_requested = False

    @property
    def interrupted(self) -> bool:
        """True when SIGINT/SIGTERM stopped the workers before the budget was spent."""
        return self._stop_requested

    # ---------------------------------------------------------------- processes

    def _command(self, slot: WorkerSlot) -> list[str]:
        cmd = [sys.executable, "-m", "hpo", "worker", "--storage", self.storage_url,
               "--study", self.study_name, "--device", slot.device,
               "--threads", str(slot.threads)]
        if self.time_limit is not None:
            cmd += ["--time-limit", str(self.time_limit)]
        return cmd + (["--verbose"] if self.verbose else [])

    def _start(self, w: _Running) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(w.slot.threads),
                   HPO_WORKER_INDEX=str(w.slot.index))
        if w.slot.cuda_visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = w.slot.cuda_visible
        w.proc = subprocess.Popen(self._command(w.slot), env=env)
        w.started = time.monotonic()
        w.restart_at = None

    def _handle_exit(self, w: _Running, rc: int) -> None:
        assert w.proc is not None
        w.history.append(rc)
        self._fail_orphans(w.proc.pid, rc)
        if rc == 0 or self._stop_requested:
            w.done = True
            return
        if rc == USER_ERROR_EXIT:
            w.gave_up = f"{w.slot.label} stopped on a user error (see its Error: line above)"
            return
        quick = time.monotonic() - w.started < QUICK_CRASH_S
        w.quick_crashes = w.quick_crashes + 1 if quick else 0
        if w.quick_crashes >= MAX_QUICK_CRASHES:
            w.gave_up = (f"{w.slot.label} crashed {w.quick_crashes} times in a row within "
                         f"{QUICK_CRASH_S:.0f} s of starting (exit codes {w.history[-5:]}); "
                         "gave up on it: fix the cause shown in its log")
            log.error(w.gave_up)
            return
        delay = BACKOFF_S[min(w.restarts, len(BACKOFF_S) - 1)]
        w.restarts += 1
        w.restart_at = time.monotonic() + delay
        log.warning("%s exited with code %s; restarting in %d s", w.slot.label, rc, delay)

    def _fail_orphans(self, pid: int, rc: int) -> None:
        """Trials a dead worker left RUNNING are failed and retried now, not after the
        heartbeat grace period (and on the journal store, which has no heartbeat)."""
        wid = f"{socket.gethostname()}:{pid}"
        study = self.loaded.study
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(ATTR_WORKER) == wid:
                fail_and_retry(study, t, f"worker process died (exit code {rc})",
                               self.loaded.config.max_retries)
                log.warning("trial %d of dead worker %s queued for retry", t.number, wid)

    # ---------------------------------------------------------------- main loop

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def run(self) -> int:
        """Returns the number of worker slots that gave up (0 = success)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT,
                                                                    signal.SIGTERM)}
        view = ProgressView(self.loaded.config.metric)
        last_view = 0.0
        try:
            for w in self.workers:
                self._start(w)
            while not self._stop_requested:
                now = time.monotonic()
                for w in self.workers:
                    if w.proc is not None and w.restart_at is None and not w.done \
                            and w.gave_up is None:
                        rc = w.proc.poll()
                        if rc is not None:
                            self._handle_exit(w, rc)
                    if w.restart_at is not None and now >= w.restart_at:
                        self._start(w)
                if all(w.done or w.gave_up for w in self.workers):
                    break
                if now - last_view >= VIEW_EVERY_S:
                    view.update(progress_of(self.loaded.study, self.loaded.config.trials),
                                self._workers_line())
                    last_view = now
                time.sleep(POLL_S)
            if self._stop_requested:
                self._stop_all()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            view.update(progress_of(self.loaded.study, self.loaded.config.trials),
                        self._workers_line())
            view.close()
        return sum(1 for w in self.workers if w.gave_up)

    def _workers_line(self) -> str:
        up = sum(1 for w in self.workers if w.proc is not None and w.proc.poll() is None)
        waiting = sum(1 for w in self.workers if w.restart_at is not None)
        line = f"workers {up}/{len(self.workers)} up"
        return line + (f", {waiting} restarting" if waiting else "")

    def _stop_all(self) -> None:
        """Forward the stop to every worker (their running trials are failed and retried),
        wait for them, then insist."""
        log.info("stopping %d worker(s)", len(self.workers))
        live = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for w in live:
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for w in live:
            assert w.proc is not None
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            self._fail_orphans(w.proc.pid, w.proc.returncode)
            w.done = True

