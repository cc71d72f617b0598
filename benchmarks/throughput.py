"""Images/s of one training epoch, three ways in one run, for several models and sizes:

  (a) hpo's trainer: uint8 cache on the device, batched tensor augmentation (strength 0.5),
      and the compute mode the trainer picks (``trainers.compute``: measured on CPU);
  (b) a typical user script: torchvision ImageFolder over PNG files with per-sample PIL
      transforms and a DataLoader (2 workers, started each epoch), fp32 as PyTorch defaults;
  (c) the compute bound: the same model's forward+backward+step on batches already on the
      device, no augmentation, in the same compute mode as (a).

Also a profile of where each epoch's time goes: the share of (b) spent waiting for the
DataLoader, the share of (a) spent gathering, augmenting and normalising batches (timed in a
second pass without the model), fp32 NCHW's compute bound (what (a)'s compute mode gains),
(b)'s images/s while computing over that fp32 bound (below 1 when the DataLoader workers' PIL
work takes the cores that training needs), and the fp32 bound over (b): the most any input
pipeline could gain over (b) without a faster compute mode. ``--profile MODEL:SIZE`` prints
(a)'s top operators instead.

    python benchmarks/throughput.py [--quick] [--repeats 5] [--profile resnet18:28]

Each row measures (a), (c) and (b) --repeats times, interleaved, and reports medians, ratios as
the median of each repeat's ratio (a shared 2-core machine's speed drifts by 10-30% over
minutes; single samples of (a) and (c) can land in different spells). Prints a table with a/b
and a/c and writes benchmarks/results/throughput.json. Timings are ratios within one run on one
machine, not absolute thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import at_least, positive_ints  # noqa: E402

from trainers import AugmentPolicy, Hyperparams, Preprocess, TrainSpec, build_model  # noqa: E402
from trainers.augment import augment_batch  # noqa: E402
from trainers.compute import FP32, ComputeMode, choose_mode  # noqa: E402
from trainers.data import Split, load_npz  # noqa: E402
from trainers.finetune import (  # noqa: E402
    _param_groups,
    _scheduler,
    place_split,
    resolve_device,
    train_one_epoch,
)

MODELS = ("mobilenetv2_100", "resnet18", "tf_efficientnet_lite0")
SIZES = (28, 64, 128)
BATCH = 32
STRENGTH = 0.5


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(_param_groups(model, 0.05), lr=1e-3)


def ours(name: str, split: Split, size: int, dev: torch.device) -> tuple[float, float,
                                                                          ComputeMode]:
    """Images/s of one epoch of the trainer, the share of it spent on the input pipeline
    (gather, augment, normalise: timed in a second pass without the model), and its mode."""
    model, info = build_model(name, 2, weights="none")
    model.to(dev)
    mode = choose_mode("auto", model, name, size, BATCH, dev, info.in_chans)
    mode.apply(model)
    prep = Preprocess(size, info.in_chans, info.mean, info.std)
    data = place_split(split, prep, dev)
    opt = _optimizer(model)
    sched = _scheduler(opt, 10_000, 1)
    spec = TrainSpec(name, epochs=1, batch_size=BATCH, policy=AugmentPolicy())
    hp = Hyperparams(lr=1e-3, aug_strength=STRENGTH, image_size=size)
    gen = torch.Generator().manual_seed(0)
    aug = torch.Generator(device=dev).manual_seed(1)
    start = time.perf_counter()
    train_one_epoch(model, data, prep, opt, sched, hp, spec, 0, dev, gen, aug, mode)
    epoch = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(len(data) // BATCH):
        x = augment_batch(prep.to_unit(data.images[i * BATCH:(i + 1) * BATCH]), STRENGTH,
                          spec.policy, aug)
        mode.batch(prep.normalize(x))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    pipeline = time.perf_counter() - start
    return (len(data) // BATCH * BATCH) / epoch, pipeline / epoch, mode


def typical(name: str, folder: Path, size: int, dev: torch.device, workers: int
            ) -> tuple[float, float, float]:
    """Images/s of the typical script's second epoch (the first warms up the model), the share
    of it spent waiting for data, and its images/s while computing (net of the waits)."""
    from torchvision import datasets, transforms

    model, info = build_model(name, 2, weights="none")
    model.to(dev).train()
    tf = transforms.Compose([
        transforms.Grayscale(num_output_channels=3),
        transforms.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(10),
        transforms.ColorJitter(brightness=0.15, contrast=0.15),
        transforms.ToTensor(),
        transforms.Normalize(info.mean, info.std),
    ])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), tf), batch_size=BATCH,
                                         shuffle=True, num_workers=workers, drop_last=True)
    opt = _optimizer(model)
    for _ in range(2):
        seen, waited = 0, 0.0
        start = time.perf_counter()  # includes worker start-up: a script pays it every epoch
        batches = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            waited += time.perf_counter() - t
            x, y = x.to(dev), y.to(dev)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
        elapsed = time.perf_counter() - start
    return seen / elapsed, waited / elapsed, seen / max(elapsed - waited, 1e-9)


def bound(name: str, n: int, size: int, dev: torch.device, mode: ComputeMode) -> float:
    model, _ = build_model(name, 2, weights="none")
    mode.apply(model.to(dev).train())
    x = mode.batch(torch.randn(BATCH, 3, size, size, device=dev))
    y = torch.randint(0, 2, (BATCH,), device=dev)
    opt = _optimizer(model)
    steps = n // BATCH
    start = time.perf_counter()
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps, as (a) and (b) had a warm-up epoch
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with mode.autocast(dev):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def write_pngs(split: Split, root: Path) -> None:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(split.images, split.labels, strict=True)):
        d = root / str(int(lab))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy() if img.shape[0] == 1 else
                        img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")


def profile(name: str, split: Split, size: int, dev: torch.device) -> None:
    """Where one epoch of (a) spends its time, by operator (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ours(name, split, size, dev)  # warm-up and mode choice
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        rate, share, mode = ours(name, split, size, dev)
    print(f"{name} at {size} px, {mode.name}: {rate:.1f} images/s; input pipeline "
          f"{share:.0%} of the epoch (second pass)")
    sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=15))


def summarize_row(name: str, size: int, mode: str, runs: dict[str, list[float]]
                  ) -> dict[str, object]:
    """Medians over the repeats. Ratios are the median of each repeat's own ratio: (a), (c)
    and (b) of one repeat ran minutes apart at most, so a drift in the machine's speed
    cancels out of their ratio instead of landing on one side."""
    def med(k: str) -> float:
        return statistics.median(runs[k])

    def ratio(x: str, y: str) -> float:
        return round(statistics.median(p / q for p, q in zip(runs[x], runs[y], strict=True)), 2)

    return {"model": name, "size": size, "compute": mode,
            "ours": round(med("a"), 1), "typical": round(med("b"), 1),
            "bound": round(med("c"), 1), "bound_fp32": round(med("c32"), 1),
            "ours_over_typical": ratio("a", "b"), "ours_over_bound": ratio("a", "c"),
            "ours_pipeline_share": round(med("pipe"), 2),
            "typical_wait_share": round(med("wait"), 2),
            "typical_compute_over_bound_fp32": ratio("b_compute", "c32"),
            "bound_fp32_over_typical": ratio("c32", "b"),
            "runs": {k: [round(x, 3) for x in v] for k, v in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (under 3 minutes)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                             "data" / "breastmnist.npz"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for (b)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated timm names")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated px")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "throughput.json"))
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved a/b/c measurements per row, medians reported "
                             "(default 5; 1 with --quick)")
    parser.add_argument("--profile", metavar="MODEL:SIZE",
                        help="instead: profile one epoch of (a) and print the top operators")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    at_least("--repeats", args.repeats, 1)
    sizes = positive_ints("--sizes", args.sizes)
    at_least("--workers", args.workers, 0)
    dev = resolve_device(args.device)
    train = load_npz(args.data).train
    n = 128 if args.quick else len(train)
    split = Split(train.images[:n], train.labels[:n])
    if args.profile:
        name, _, size = args.profile.partition(":")
        profile(name, split, int(size or 28), dev)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        write_pngs(split, folder)
        print("a = hpo's trainer, b = typical PIL/DataLoader script, c = compute bound "
              "(images/s); a pipe = share of (a) in its input pipeline, b wait = share of (b) "
              "waiting for data, c fp32 = fp32 NCHW bound, b cpu = (b) computing / c fp32")
        print(f"{'model':<24}{'size':>5}{'a':>9}{'b':>9}{'c':>9}{'a/b':>7}{'a/c':>7}"
              f"{'a pipe':>7}{'b wait':>7}{'c fp32':>9}{'b cpu':>7}  mode of (a) and (c)")
        for name in args.models.split(","):
            for size in sizes:
                ours(name, split, size, dev)  # warm-up (allocator, cudnn autotune, mode choice)
                runs: dict[str, list[float]] = {k: [] for k in ("a", "c", "c32", "b", "pipe",
                                                                 "wait", "b_compute")}
                for _ in range(args.repeats):  # interleaved, so a slow spell hits all three
                    a, a_pipe, mode = ours(name, split, size, dev)
                    c = bound(name, n, size, dev, mode)  # right after (a): same spell
                    c32 = c if mode == FP32 else bound(name, n, size, dev, FP32)
                    b, b_wait, b_compute = typical(name, folder, size, dev, args.workers)
                    for k, v in zip(runs, (a, c, c32, b, a_pipe, b_wait, b_compute),
                                    strict=True):
                        runs[k].append(v)
                rows.append(summarize_row(name, size, mode.name, runs))
                r = rows[-1]
                print(f"{name:<24}{size:>5}{r['ours']:>9}{r['typical']:>9}{r['bound']:>9}"
                      f"{r['ours_over_typical']:>7}{r['ours_over_bound']:>7}"
                      f"{r['ours_pipeline_share']:>7}{r['typical_wait_share']:>7}"
                      f"{r['bound_fp32']:>9}{r['typical_compute_over_bound_fp32']:>7}"
                      f"  {mode.name}", flush=True)
    out = Path(args.out)
    out.write_text(json.dumps({
        "device": str(dev), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "machine": platform.platform(), "torch": torch.__version__, "images": n,
        "batch": BATCH, "aug_strength": STRENGTH, "repeats": args.repeats, "rows": rows},
        indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    import _cli

    _cli.run(main)
