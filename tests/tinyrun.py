"""Shared helpers for trainer tests: a tiny real-video dataset and a tiny-model config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough for seconds per epoch on 2 CPU cores, still a real Swin + real decoding.
TINY: dict[str, Any] = dict(
    backbone="swin_micro",
    pretrained="none",
    clip_len=8,
    frame_interval=2,
    img_size=32,
    videos_per_gpu=4,
    evaluation=1,
    lr=2e-3,
    backbone_lr_mult=1.0,
    warmup_epochs=0,
    drop_path_rate=0.0,
    flip=False,
    min_crop_area=0.6,
    test_clips=1,
    num_workers=0,
    log_interval=5,
)


def make_tiny_dataset(
    root: Path, per_class: int = 4, classes: tuple[str, ...] = ("move_left", "move_right", "grow")
) -> Any:
    """A few short real encoded videos per class (both containers), with train/val/test lists."""
    from autox_video.data.demo import make_demo_dataset

    return make_demo_dataset(
        root,
        num_per_class_train=per_class,
        num_per_class_val=2,
        num_per_class_test=2,
        num_frames=16,
        size=32,
        classes=list(classes),
    )


def write_config(path: Path, ds: Any, work_dir: Path, **overrides: Any) -> Path:
    """config.yaml for a tiny run on `ds`."""
    cfg = dict(
        TINY,
        data_root=str(ds.data_root),
        ann_file_train=str(ds.train_list),
        ann_file_val=str(ds.val_list),
        ann_file_test=str(ds.test_list),
        class_names=str(ds.classes_file),
        work_dir=str(work_dir),
        test_results_path=str(Path(work_dir).parent / "results.json"),
        epoch=2,
    )
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `python -m autox_video ARGS` and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "autox_video", *args],
        cwd=cwd,
        env=full_env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def upload_tree(client: Any, bucket: str, root: Path, prefix: str) -> None:
    """Upload a local dataset folder to s3://bucket/prefix/ (hidden files left out)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def s3_config(tmp_path: Path, ds: Any, bucket: str, **extra: Any) -> Path:
    """config.yaml for a tiny run whose data (uploaded under data/) and work_dir (runs/r1/) are in S3."""
    base = f"s3://{bucket}/data"
    return write_config(
        tmp_path / "config.yaml",
        ds,
        f"s3://{bucket}/runs/r1/",
        data_root=base,
        ann_file_train=f"{base}/train_list.txt",
        ann_file_val=f"{base}/val_list.txt",
        ann_file_test=f"{base}/test_list.txt",
        class_names=f"{base}/classes.txt",
        test_results_path=str(tmp_path / "results.json"),
        **extra,
    )
