"""Which compute settings make a training step faster on this machine's CPU (or GPU)?

For each model and size: forward+backward+AdamW step on batches already on the device, in
fp32 NCHW (the default every user script gets), channels-last, bf16 autocast, and both. The
trainer makes the same measurement per model and size (``trainers.compute.choose_mode``).

    python benchmarks/compute_modes.py [--quick] [--device auto]

Prints images/s and the speed-up over fp32 NCHW; writes benchmarks/results/compute_modes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainers import build_model  # noqa: E402
from trainers.finetune import resolve_device  # noqa: E402

MODELS = ("mobilenetv2_100", "resnet18", "tf_efficientnet_lite0")
SIZES = (28, 64, 128)
BATCH = 32
MODES = {"fp32": (False, None), "channels_last": (True, None),
         "bf16": (False, torch.bfloat16), "bf16+channels_last": (True, torch.bfloat16)}


def step_rate(name: str, size: int, dev: torch.device, channels_last: bool,
              dtype: torch.dtype | None, steps: int) -> float:
    torch.manual_seed(0)
    model, _ = build_model(name, 2, weights="none")
    model.to(dev).train()
    x = torch.randn(BATCH, 3, size, size, device=dev)
    y = torch.randint(0, 2, (BATCH,), device=dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def run(n: int) -> None:
        for _ in range(n):
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    run(2)  # warm-up: oneDNN primitive creation, allocator
    start = time.perf_counter()
    run(steps)
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 3 minutes)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dev = resolve_device(args.device)
    steps = 4 if args.quick else 12
    rows = []
    print(f"{'model':<24}{'size':>5}" + "".join(f"{m:>20}" for m in MODES))
    for name in MODELS:
        for size in SIZES:
            rates = {m: step_rate(name, size, dev, cl, dt, steps) for m, (cl, dt) in MODES.items()}
            base = rates["fp32"]
            rows.append({"model": name, "size": size,
                         **{m: round(r, 1) for m, r in rates.items()},
                         **{f"{m}_speedup": round(r / base, 2) for m, r in rates.items()}})
            print(f"{name:<24}{size:>5}" + "".join(
                f"{rates[m]:>12.1f} ({rates[m] / base:.2f})" for m in MODES), flush=True)
    out = Path(__file__).parent / "results" / "compute_modes.json"
    out.write_text(json.dumps({
        "device": str(dev), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "machine": platform.platform(), "processor": _cpu_name(), "torch": torch.__version__,
        "batch": BATCH, "steps": steps, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    import _cli

    _cli.run(main)
