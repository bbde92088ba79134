"""`skulens detector train`: its clear errors (the training itself is tested in tests/detectors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def detector(*args: str, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "--data", str(data), "detector", "train", *args],
                          capture_output=True, text=True, timeout=120)


def test_detector_train_says_what_it_needs(tmp_path):
    none = detector(data=tmp_path / "d")
    assert none.returncode == 1 and none.stderr.startswith("error: give photo folders")
    missing = detector("--dataset", str(tmp_path / "nope.yaml"), data=tmp_path / "d")
    assert missing.returncode == 1 and "no data set description at" in missing.stderr
    both = detector(str(tmp_path), "--dataset", str(tmp_path / "nope.yaml"), data=tmp_path / "d")
    assert both.returncode == 1 and "either photo folders or --dataset" in both.stderr
    nowhere = detector(str(tmp_path / "nowhere"), data=tmp_path / "d")
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("error: not a folder")
    help_text = subprocess.run([sys.executable, "-m", "service.cli", "detector", "train", "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    assert "--data-only" in help_text and "--hours" in help_text


def test_detector_eval_needs_the_data_set_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--data", str(tmp_path / "d"), "detector", "eval",
                           str(tmp_path / "w.pt"), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: no val images in")
