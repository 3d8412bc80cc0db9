"""The evaluation report: its numbers against hand-computed confusion matrices, `autox-video report`, and the
page itself opened in a real headless Chromium (DOM checked over the DevTools protocol, no network)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tinyrun import cli

from autox_video.report import build_report, metrics, write_report
from autox_video.report.plots import tick_step

# --- metrics, table-driven ----------------------------------------------------------------------
# (y_true, y_pred, num_classes, confusion matrix, precision, recall, f1, mean class accuracy)
CASES = [
    pytest.param(
        [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3,
        [[2, 1, 0], [0, 1, 1], [0, 0, 1]],
        [1.0, 0.5, 0.5], [2 / 3, 0.5, 1.0], [0.8, 0.5, 2 / 3], (2 / 3 + 0.5 + 1.0) / 3,
        id="three-classes",
    ),
    pytest.param(  # class 2 has no true samples: no recall, no F1, left out of the mean
        [0, 0, 1, 1], [0, 2, 1, 1], 3,
        [[1, 0, 1], [0, 2, 0], [0, 0, 0]],
        [1.0, 1.0, 0.0], [0.5, 1.0, None], [2 / 3, 1.0, None], 0.75,
        id="class-without-support",
    ),
    pytest.param(  # class 1 is never predicted: no precision, but F1 0 (it was missed every time)
        [0, 1, 1], [0, 0, 0], 2,
        [[1, 0], [2, 0]],
        [1 / 3, None], [1.0, 0.0], [0.5, 0.0], 0.5,
        id="class-never-predicted",
    ),
    pytest.param(
        [0, 1, 2, 3], [0, 1, 2, 3], 4,
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
        [1.0] * 4, [1.0] * 4, [1.0] * 4, 1.0,
        id="perfect",
    ),
]  # fmt: skip


def _close(got: list[float | None], want: list[float | None]) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None) or (g is not None and w is not None and abs(g - w) < 1e-9)
        for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize(("y_true", "y_pred", "n", "cm", "precision", "recall", "f1", "mca"), CASES)
def test_class_metrics_match_hand_computed(y_true, y_pred, n, cm, precision, recall, f1, mca) -> None:  # type: ignore[no-untyped-def]
    got = metrics.confusion_matrix(y_true, y_pred, n)
    assert got.tolist() == cm
    stats = metrics.class_stats(got)
    assert _close(stats.precision, precision), stats.precision
    assert _close(stats.recall, recall), stats.recall
    assert _close(stats.f1, f1), stats.f1
    assert stats.support == [int(s) for s in np.asarray(cm).sum(axis=1)]
    assert metrics.mean_class_accuracy(got) == pytest.approx(mca)


def test_normalised_rows_leave_empty_classes_at_zero() -> None:
    norm = metrics.normalise_rows(np.array([[1, 3], [0, 0]]))
    assert norm.tolist() == [[0.25, 0.75], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("cm", "want"),
    [
        # equal counts: the larger share of its true class first (1 of 2 beats 1 of 3)
        ([[2, 1, 0], [0, 1, 1], [0, 0, 1]], [(1, 2, 1, 0.5), (0, 1, 1, 1 / 3)]),
        ([[0, 5], [1, 0]], [(0, 1, 5, 1.0), (1, 0, 1, 1.0)]),
        ([[3, 0], [0, 3]], []),
    ],
)
def test_top_confusions(cm: list[list[int]], want: list[tuple[int, int, int, float]]) -> None:
    got = metrics.top_confusions(np.array(cm), limit=10)
    assert [(c["true"], c["predicted"], c["count"], pytest.approx(c["rate"])) for c in got] == want


def test_confused_pairs_add_both_directions() -> None:
    cm = metrics.confusion_matrix([0, 0, 1, 1, 1, 2], [1, 1, 0, 2, 1, 2], 3)
    assert metrics.confused_pairs(cm, limit=5) == [
        {"a": 0, "b": 1, "count": 3, "a_as_b": 2, "b_as_a": 1},
        {"a": 1, "b": 2, "count": 1, "a_as_b": 1, "b_as_a": 0},
    ]


@pytest.mark.parametrize(("k", "want"), [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (5, 1.0)])
def test_topk_accuracy(k: int, want: float) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1]])
    assert metrics.topk_accuracy([0, 1, 2], probs, k) == pytest.approx(want)


# --- results.json -> report ---------------------------------------------------------------------
def fake_results(num_classes: int, per_class: int, *, seed: int = 0, accuracy: float = 0.7) -> dict[str, Any]:
    """A results.json as `autox-video test` writes it, with true labels and a given share right."""
    rng = np.random.default_rng(seed)
    names = [f"class_{i:03d}" for i in range(num_classes)]
    preds = []
    for i in range(num_classes * per_class):
        true = i % num_classes
        p = rng.dirichlet(np.ones(num_classes) * 0.3)
        target = true if rng.random() < accuracy else (true + 1 + int(rng.integers(3))) % num_classes
        p[target] += 1.0
        p /= p.sum()
        top = np.argsort(-p)[: min(5, num_classes)]
        label = int(top[0])
        preds.append(
            {
                "video": f"{names[true]}/clip {i}.mp4",
                "label": label,
                "label_name": names[label],
                "score": float(p[label]),
                "topk": [[int(c), float(p[c])] for c in top],
                "probs": [float(x) for x in p],
                "true_label": true,
            }
        )
    return {
        "model": "swin_micro",
        "checkpoint": "/runs/r1/best.pth",
        "checkpoint_epoch": 3,
        "config": {"backbone": "swin_micro", "epoch": 3, "img_size": 32, "work_dir": "/runs/r1"},
        "classes": names,
        "metrics": {},
        "predictions": preds,
    }


def test_report_numbers_agree_with_the_predictions() -> None:
    results = fake_results(4, 10)
    rep = build_report(results)
    rows = results["predictions"]
    y, p = [r["true_label"] for r in rows], [r["label"] for r in rows]
    cm = np.array(rep["confusion_matrix"])
    assert cm.sum() == 40 and np.trace(cm) == sum(a == b for a, b in zip(y, p, strict=True))
    assert rep["summary"]["top1"] == pytest.approx(np.trace(cm) / 40)
    assert rep["summary"]["top4"] == 1.0  # 4 classes: top-5 is top-4 (named as in results.json)
    assert [c["support"] for c in rep["per_class"]] == [10] * 4
    assert rep["misclassified"]["count"] == 40 - np.trace(cm)
    scores = [v["score"] for v in rep["misclassified"]["most_confident"]]
    assert scores == sorted(scores, reverse=True)  # the confidently wrong first
    least = [v["score"] for v in rep["least_confident"]]
    assert least == sorted(least) and least[0] == min(r["score"] for r in rows)
    assert rep["source"]["checkpoint"] == "/runs/r1/best.pth" and rep["source"]["checkpoint_epoch"] == 3


def test_class_without_test_videos_has_no_recall_in_the_report() -> None:
    results = fake_results(3, 4)
    results["classes"].append("never_seen")  # a 4th class with no test video, never predicted
    for r in results["predictions"]:
        r["probs"].append(0.0)
    rep = build_report(results)
    last = rep["per_class"][3]
    assert last["support"] == 0 and last["recall"] is None and last["f1"] is None
    present = [c["recall"] for c in rep["per_class"][:3]]
    assert rep["summary"]["mean_class_accuracy"] == pytest.approx(sum(present) / 3)


def test_hundred_and_twenty_classes_label_sparsely_and_list_the_largest_confusions(tmp_path: Path) -> None:
    from PIL import Image

    results = fake_results(120, 3, accuracy=0.5)
    files = write_report(results, tmp_path)
    page = files.html.read_text()
    rep = json.loads(files.json.read_text())
    assert len(rep["per_class"]) == 120 and len(rep["confusion_matrix"]) == 120
    assert len(_rows(page, "per-class")) == 120
    assert len(_rows(page, "top-confusions")) == 20  # listed below the (sparsely labelled) matrix
    assert tick_step(120) == 3
    png = re.search(r'id="confusion-matrix"[^>]*src="data:image/png;base64,([^"]+)"', page, re.S)
    assert png is not None
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(png.group(1)))) as img:
        assert 800 <= img.width <= 1600 and 700 <= img.height <= 1400


def _rows(page: str, table_id: str) -> list[str]:
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert body is not None, table_id
    return re.findall(r"<tr>", body.group(1))


def test_report_command_writes_both_files_beside_results(tmp_path: Path) -> None:
    results_file = tmp_path / "out" / "results.json"
    results_file.parent.mkdir()
    results_file.write_text(json.dumps(fake_results(5, 6)))
    done = cli("report", str(results_file), timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"report: {tmp_path / 'out' / 'report.html'}" in done.stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["summary"]["videos"] == 30 and rep["source"]["results"] == str(results_file)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "class_004" in page and "swin_micro" in page and "clip 3.mp4" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: every resource inline


def test_report_command_on_s3_results_uploads_the_report_beside_them(bucket: str, s3_env) -> None:  # type: ignore[no-untyped-def]
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="eval/r1/results.json", Body=json.dumps(fake_results(3, 4)).encode())
    done = cli("report", f"s3://{bucket}/eval/r1/results.json", timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"report: s3://{bucket}/eval/r1/report.html" in done.stdout
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="eval/r1/")["Contents"]}
    assert keys == {"eval/r1/results.json", "eval/r1/report.json", "eval/r1/report.html"}
    rep = json.loads(client.get_object(Bucket=bucket, Key="eval/r1/report.json")["Body"].read())
    assert rep["summary"]["videos"] == 12 and rep["source"]["results"] == f"s3://{bucket}/eval/r1/results.json"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ([[0.1, 0.9]], "seed-format results"),
        ({"predictions": [{"video": "a.mp4", "label": 0, "probs": [1.0]}]}, "no prediction has a true label"),
        ({"videos": []}, "not an autox-video results.json"),
    ],
)
def test_report_command_explains_unusable_results(tmp_path: Path, content: Any, says: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    done = cli("report", str(path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr and str(path) in done.stderr


# --- the page in a real browser ------------------------------------------------------------------
class DevTools:
    """A page of a headless Chromium, driven over the DevTools protocol (websocket-client)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        # Chromium rejects websocket clients that send an Origin it was not told to allow.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command; keep the events that arrive before its answer."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for an event (it may already have arrived)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(json.loads(self.ws.recv()))
        raise AssertionError(f"no {method} within {timeout}s")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")


def _start_chromium(profile: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Chromium on about:blank with a fresh profile; returns it and its page's websocket URL."""
    exe = shutil.which("chromium")
    assert exe is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    flags += [f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,1600"]
    proc = subprocess.Popen([exe, *flags, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
    deadline = time.time() + 60
    while not (port_file.is_file() and port_file.read_text().count("\n") >= 1) and time.time() < deadline:
        assert proc.poll() is None, "chromium exited at start"
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    for _ in range(100):
        targets = json.loads(local.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return proc, pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise AssertionError("chromium shows no page target")


# CI (CI=true) never skips it: .ci/run installs chromium, so a missing one there is a failure.
@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"), reason="needs Debian's chromium (.ci/run has it)"
)
def test_report_renders_in_headless_chromium_without_network(tmp_path: Path) -> None:
    results = fake_results(12, 5, seed=3, accuracy=0.6)
    files = write_report(results, tmp_path)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc, ws_url = _start_chromium(Path(profile))
        try:
            page = DevTools(ws_url)
            page.call("Network.enable")
            page.call("Page.enable")
            page.call("Page.navigate", url=files.html.as_uri())
            page.wait_event("Page.loadEventFired")
            shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            image = page.js(
                "(() => { const i = document.getElementById('confusion-matrix');"
                " return [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]; })()"
            )
            rows = page.js("document.querySelectorAll('#per-class tbody tr').length")
            names = page.js(
                "Array.from(document.querySelectorAll('#per-class tbody tr td:first-child'), td => td.textContent)"
            )
            resources = page.js("performance.getEntriesByType('resource').map(e => e.name)")
            # Sorting: a click on "recall" orders the rows by it, a second click reverses them.
            page.js("document.querySelectorAll('#per-class th')[2].click()")
            up = page.js("Array.from(document.querySelectorAll('#per-class tbody tr'), r => +r.cells[2].dataset.v)")
            page.js("document.querySelectorAll('#per-class th')[2].click()")
            down = page.js("Array.from(document.querySelectorAll('#per-class tbody tr'), r => +r.cells[2].dataset.v)")
            page.call("Network.disable")  # drains the events still queued
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    import base64

    (tmp_path / "screenshot.png").write_bytes(base64.b64decode(shot["data"]))
    assert image[0] is True and image[1] > 0 and image[2] > 0 and image[3] > 100, image
    assert rows == 12 and names == results["classes"]
    assert up == sorted(up) and down == sorted(up, reverse=True)
    requested = [e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"]
    assert requested and requested[0] == files.html.as_uri()
    assert all(u == files.html.as_uri() or u.startswith("data:") for u in requested), requested
    assert all(u.startswith("data:") for u in resources), resources
    assert not [e for e in page.events if e.get("method") == "Network.loadingFailed"]
    assert (tmp_path / "screenshot.png").stat().st_size > 20_000  # a rendered page, not a blank one


# --- a labelled timeline: per second and per segment ---------------------------------------------
def _line(video: str, start: float, end: float, true: int, predicted: list[int]) -> dict[str, Any]:
    """A results.json entry of a ranged labelled line with one predicted class per second."""
    edges = [*np.arange(start, end, 1.0), end]
    seconds = [{"start": float(a), "end": float(b), "label": p, "topk": [[p, 0.9]], "score": 0.9}
               for a, b, p in zip(edges[:-1], edges[1:], predicted, strict=True)]  # fmt: skip
    return {"video": video, "start": start, "end": end, "label": predicted[0], "score": 0.9, "topk": [[0, 0.9]],
            "probs": [0.9, 0.05, 0.05], "true_label": true, "seconds": seconds}  # fmt: skip


def test_timeline_metrics_match_hand_computed() -> None:
    from autox_video.report.timeline_metrics import timeline_metrics

    rows = [
        _line("a.mp4", 4, 8, 1, [1, 1, 2, 2]),  # listed out of time order: sorted per video
        _line("a.mp4", 0, 4, 0, [0, 0, 0, 1]),
        _line("b.mp4", 10, 12.5, 2, [2, 2, 2]),  # a half second at the end counts as one
        {"video": "c.mp4", "label": 0, "probs": [1, 0, 0], "true_label": 0},  # no seconds: not on the timeline
    ]
    t = timeline_metrics(rows, 3)
    assert t is not None
    assert t["seconds"] == 11 and t["per_second_accuracy"] == pytest.approx(8 / 11)
    assert t["confusion_matrix"] == [[3, 1, 0], [0, 2, 2], [0, 0, 3]]
    # a: predicted runs 0[0,3) 1[3,6) 2[6,8) vs true 0[0,4) 1[4,8): IoU 0.75 matches, 0.4 does not; b matches.
    assert (t["segments_predicted"], t["segments_true"], t["segments_matched"]) == (4, 3, 2)
    assert t["segment_precision"] == pytest.approx(0.5) and t["segment_recall"] == pytest.approx(2 / 3)
    assert [v["video"] for v in t["videos"]] == ["a.mp4", "b.mp4"]
    assert t["videos"][0]["seconds"][3] == [3.0, 4.0, 1, 0] and t["videos"][0]["accuracy"] == pytest.approx(5 / 8)
    assert timeline_metrics([rows[3]], 3) is None


def test_adjacent_lines_of_one_label_are_one_true_segment_and_each_segment_matches_once() -> None:
    from autox_video.report.timeline_metrics import Segment, match_segments, timeline_metrics

    t = timeline_metrics([_line("v.mp4", 0, 2, 1, [1, 1]), _line("v.mp4", 2, 4, 1, [1, 1])], 3)
    assert t is not None and (t["segments_true"], t["segments_predicted"], t["segment_recall"]) == (1, 1, 1.0)
    true = [Segment(0, 10, 0)]
    assert match_segments([Segment(0, 6, 0), Segment(6, 10, 0)], true) == 1  # IoU 0.6 and 0.4: one match
    assert match_segments([Segment(0, 6, 0), Segment(1, 7, 0)], true) == 1  # both >= 0.5, the true one used once
    assert match_segments([Segment(0, 10, 1)], true) == 0  # another class never matches


def test_report_of_a_labelled_timeline_has_per_second_numbers_and_strips(tmp_path: Path) -> None:
    results = {"classes": ["a", "b", "c"], "predictions": [_line("v.mp4", 0, 4, 0, [0, 0, 0, 1]),
                                                           _line("v.mp4", 4, 8, 1, [1, 1, 2, 2])]}  # fmt: skip
    files = write_report(results, tmp_path)
    data = json.loads(files.json.read_text())
    assert data["per_second_accuracy"] == pytest.approx(5 / 8) and data["timeline"]["seconds"] == 8
    html = files.html.read_text()
    assert html.count('class="pred"') == 8 and html.count('class="true"') == 8 and 'id="timelines"' in html
    plain = write_report(fake_results(3, 2), tmp_path / "plain")
    assert "timeline" not in json.loads(plain.json.read_text()) and 'id="timelines"' not in plain.html.read_text()
