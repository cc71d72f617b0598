"""Images/s of one training epoch, three ways in one run, for several models and sizes:

  (a) hpo's trainer: uint8 cache on the device, batched tensor augmentation (strength 0.5);
  (b) a typical user script: torchvision ImageFolder over PNG files with per-sample PIL
      transforms and a DataLoader (2 workers, started each epoch);
  (c) the compute bound: the same model's forward+backward+step on batches already on the
      device, no augmentation.

    python benchmarks/throughput.py [--quick] [--data ../shared/data/breastmnist.npz]

Prints a table with a/b and a/c and writes benchmarks/results/throughput.json. Timings are
ratios within one run on one machine, not absolute thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainers import AugmentPolicy, Hyperparams, Preprocess, TrainSpec, build_model  # noqa: E402
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


def ours(name: str, split: Split, size: int, dev: torch.device) -> float:
    model, info = build_model(name, 2, weights="none")
    model.to(dev)
    prep = Preprocess(size, info.in_chans, info.mean, info.std)
    data = place_split(split, prep, dev)
    opt = _optimizer(model)
    sched = _scheduler(opt, 10_000, 1)
    spec = TrainSpec(name, epochs=1, batch_size=BATCH, policy=AugmentPolicy())
    hp = Hyperparams(lr=1e-3, aug_strength=STRENGTH, image_size=size)
    gen = torch.Generator().manual_seed(0)
    aug = torch.Generator(device=dev).manual_seed(1)
    start = time.perf_counter()
    train_one_epoch(model, data, prep, opt, sched, hp, spec, 0, dev, gen, aug)
    return (len(data) // BATCH * BATCH) / (time.perf_counter() - start)


def typical(name: str, folder: Path, size: int, dev: torch.device, workers: int) -> float:
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
    seen = 0
    start = time.perf_counter()  # includes worker start-up: a user script pays it every epoch
    for x, y in loader:
        x, y = x.to(dev), y.to(dev)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def bound(name: str, n: int, size: int, dev: torch.device) -> float:
    model, _ = build_model(name, 2, weights="none")
    model.to(dev).train()
    x = torch.randn(BATCH, 3, size, size, device=dev)
    y = torch.randint(0, 2, (BATCH,), device=dev)
    opt = _optimizer(model)
    steps = n // BATCH
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (under 3 minutes)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                             "data" / "breastmnist.npz"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for (b)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dev = resolve_device(args.device)
    train = load_npz(args.data).train
    n = 192 if args.quick else len(train)
    split = Split(train.images[:n], train.labels[:n])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        write_pngs(split, folder)
        for name in MODELS:
            for size in SIZES:
                ours(name, split, size, dev)  # warm-up (allocator, cudnn autotune)
                a = ours(name, split, size, dev)
                b = typical(name, folder, size, dev, args.workers)
                c = bound(name, n, size, dev)
                rows.append({"model": name, "size": size, "ours": round(a, 1),
                             "typical": round(b, 1), "bound": round(c, 1),
                             "ours_over_typical": round(a / b, 2),
                             "ours_over_bound": round(a / c, 2)})
                r = rows[-1]
                print(f"{name:<24}{size:>5}{r['ours']:>9}{r['typical']:>9}{r['bound']:>9}"
                      f"{r['ours_over_typical']:>7}{r['ours_over_bound']:>7}", flush=True)
    out = Path(__file__).parent / "results" / "throughput.json"
    out.write_text(json.dumps({
        "device": str(dev), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "machine": platform.platform(), "torch": torch.__version__, "images": n,
        "batch": BATCH, "aug_strength": STRENGTH, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
