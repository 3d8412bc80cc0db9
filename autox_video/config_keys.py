"""Config keys grouped by role, for the modules that treat them alike (validators, the search's checks)."""

from __future__ import annotations

# Keys that hold a local path or an s3:// URI.
LOCATION_KEYS = (
    "data_root",
    "ann_file_train",
    "ann_file_val",
    "ann_file_test",
    "work_dir",
    "test_results_path",
    "pretrained",
    "checkpoint",
    "class_names",
)
