"""Evaluation report: results.json with true labels -> report.json + a self-contained report.html.

report.json: summary (top-1, top-5, mean class accuracy), per-class precision/recall/F1/support, the
confusion matrix (counts; rows = true class), the largest confusions, the most confused pairs, the
misclassified and least confident videos, and the model/checkpoint/config the results came from;
for a labelled timeline (ranged lines tested with seconds) per-second accuracy, segment precision/recall
at temporal IoU 0.5, the confusion over seconds and each video's strip of predicted and true seconds.
"""

from __future__ import annotations

from autox_video.report.build import (
    ReportFiles,
    build_report,
    publish_report,
    read_results,
    report_results,
    write_report,
)

__all__ = ["ReportFiles", "build_report", "publish_report", "read_results", "report_results", "write_report"]
