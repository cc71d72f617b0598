from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from hpo.cli import main
from trainers import load_npz
from trainers.datacheck import check_data


def test_breastmnist_counts_and_its_real_duplicates(breast_npz: Path) -> None:
    r = check_data(str(breast_npz))
    assert r.counts["train"] == {"malignant": 147, "normal, benign": 399}
    assert sum(r.counts["test"].values()) == 156
    assert r.leaks_exact == [["train[115]", "test[76]"]]  # one image is in train and test
    ds = load_npz(breast_npz)
    assert (ds.train.images[115] == ds.test.images[76]).all()
    # near duplicates are confirmed by pixel correlation, not just the hash
    assert len(r.leaks_near) > 10
    assert r.problems() and "leakage" in r.problems()[0]


def _folder(tmp_path: Path, breast_npz: Path) -> Path:
    ds = load_npz(breast_npz)
    root = tmp_path / "data"
    for split, images, labels in (("train", ds.train.images[:40], ds.train.labels[:40]),
                                  ("val", ds.val.images[:20], ds.val.labels[:20])):
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            d = root / split / ["malignant", "benign"][int(lab)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(d / f"{split}{i}.png")
    return root


def test_folder_with_corrupt_file_empty_class_and_leak(tmp_path: Path, breast_npz: Path) -> None:
    root = _folder(tmp_path, breast_npz)
    (root / "train" / "benign" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "train" / "cyst").mkdir()  # a class with no images
    leaked = next((root / "train" / "benign").glob("train*.png"))
    shutil.copy(leaked, root / "val" / "benign" / "copied.png")
    r = check_data(str(root))
    assert any("broken.png" in u for u in r.unreadable)
    assert "train/cyst" in r.empty_classes
    assert any("val/benign/copied.png" in " ".join(g) and leaked.name in " ".join(g)
               for g in r.leaks_exact)
    assert len(r.problems()) == 3

    out = CliRunner().invoke(main, ["data", "check", str(root)])
    assert out.exit_code == 1
    assert "broken.png" in out.output and "cyst" in out.output and "copied.png" in out.output
    as_json = json.loads(CliRunner().invoke(main, ["data", "check", str(root), "--json"]).stdout)
    assert len(as_json["problems"]) == 3 and as_json["counts"]["train"]["cyst"] == 0

    storage = tmp_path / "s.journal"
    refused = CliRunner().invoke(main, ["study", "create", "s", "--data", str(root), "--model",
                                        "test_resnet", "--weights", "none", "--storage",
                                        str(storage)])
    assert refused.exit_code == 2
    assert "data check failed" in refused.output and "--allow-data-issues" in refused.output
    assert not storage.exists() or "s" not in CliRunner().invoke(
        main, ["study", "list", "--storage", str(storage)]).output


def test_clean_folder_passes_and_imbalance_suggests_a_metric(tmp_path: Path,
                                                             breast_npz: Path) -> None:
    root = _folder(tmp_path, breast_npz)
    r = check_data(str(root))
    assert not r.problems()
    for f in list((root / "train" / "malignant").glob("*.png"))[1:]:
        f.unlink()
    r = check_data(str(root))
    assert any("balanced_accuracy" in w for w in r.warnings("accuracy"))


def test_folders_the_loader_refuses_are_problems(tmp_path: Path, breast_npz: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    one = _folder(tmp_path / "one", breast_npz)
    shutil.rmtree(one / "train" / "malignant")
    shutil.rmtree(one / "val" / "malignant")
    no_val = _folder(tmp_path / "noval", breast_npz)
    shutil.rmtree(no_val / "val")
    tiny = tmp_path / "tiny"
    for c in ("a", "b"):  # one tree of 2 images per class: 70/15/15 leaves val empty
        (tiny / c).mkdir(parents=True)
        for i, img in enumerate(load_npz(breast_npz).train.images[:2]):
            Image.fromarray(img[0].numpy()).save(tiny / c / f"{i}.png")
    for root, needle in ((empty, "found 0 class folder"), (one, "at least two class"),
                         (no_val, "no val/"), (tiny, "val split is empty")):
        r = check_data(str(root))
        assert r.problems() and needle in r.problems()[0], (root, r.problems())
        out = CliRunner().invoke(main, ["data", "check", str(root)])
        assert out.exit_code == 1 and needle in out.output, out.output
        assert "Traceback" not in out.output
        as_json = json.loads(CliRunner().invoke(main, ["data", "check", str(root),
                                                       "--json"]).stdout)
        assert as_json["problems"] and needle in as_json["problems"][0]
