"""Predictions over time: seconds, shots and segments of long videos, Vertex AI JSONL in and out, ranges."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tinyrun import cli, write_config

from autox_video.data.annotations import read_annotations
from autox_video.data.demo import make_demo_dataset, make_timeline_video
from autox_video.errors import AnnotationError

pytestmark = pytest.mark.slow

CLASSES = ["move_left", "rotate_cw", "grow"]
PARTS = [("move_left", 4), ("grow", 4), ("rotate_cw", 4), ("move_left", 3), ("grow", 5)]
FPS = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one training of this module: a tiny Swin on the short demo clips (easy mode) plus the labelled
    ranges of one long video (`path start end label` lines), 3 epochs."""
    root = tmp_path_factory.mktemp("timeline")
    ds = make_demo_dataset(
        root / "ds", num_per_class_train=8, num_per_class_val=2, num_per_class_test=2, num_frames=16, size=32,
        classes=CLASSES, easy=True,
    )  # fmt: skip
    make_timeline_video(ds.data_root / "long_train.mp4", PARTS, size=32, fps=FPS, seed=7, easy=True)
    train_list = root / "train_with_ranges.txt"
    train_list.write_text(ds.train_list.read_text() + "".join(
        f"long_train.mp4 {a:g} {b:g} {CLASSES.index(c)}\n" for c, a, b in _ranges()))  # fmt: skip
    config = write_config(root / "config.yaml", ds, root / "run", epoch=3, evaluation=0, ann_file_val=None,
                          ann_file_train=str(train_list))  # fmt: skip
    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    return config


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    root = tmp_path_factory.mktemp("long")
    cuts = make_timeline_video(root / "long.mp4", PARTS, size=32, fps=FPS, seed=5, easy=True)
    return root, cuts


def _ranges() -> list[tuple[str, float, float]]:
    """PARTS as (class, start s, end s)."""
    out, edge = [], 0.0
    for cls, seconds in PARTS:
        out.append((cls, edge, edge + seconds))
        edge += seconds
    return out


def test_training_draws_frames_inside_each_labelled_range(trained: Path) -> None:
    """The ranged rows reach the dataset, and training and validation clips stay inside each row's range."""
    from mmaction.utils import register_all_modules
    from mmengine.registry import DATASETS

    from autox_video.config import load_config
    from autox_video.training import engine, recipe  # noqa: F401  (registers the dataset)

    register_all_modules(init_default_scope=True)
    cfg = load_config(trained)
    rows = [json.loads(x) for x in (Path(cfg.work_dir) / "lists" / "train.jsonl").read_text().splitlines()]
    ranged = [k for k, r in enumerate(rows) if r["video"] == "long_train.mp4"]
    assert [(rows[k]["start"], rows[k]["end"], rows[k]["label"]) for k in ranged] == [
        (a, b, CLASSES.index(c)) for c, a, b in _ranges()]  # fmt: skip
    lists = Path(cfg.work_dir) / "lists" / "train.jsonl"
    for pipeline, draws in ((recipe.train_pipeline(cfg), 6), (recipe.eval_pipeline(cfg, num_clips=2, num_crops=1), 1)):
        upto = next(i for i, s in enumerate(pipeline) if s["type"] == "FastDecordDecode") + 1
        data = DATASETS.build(dict(type="AutoXVideoDataset", ann_file=str(lists), pipeline=pipeline[:upto]))
        for k in ranged:
            lo, hi = round(rows[k]["start"] * FPS), round(rows[k]["end"] * FPS)
            seen = set()
            for _ in range(draws):
                out = data[k]
                inds = out["frame_inds"]
                assert lo <= inds.min() and inds.max() < hi, (rows[k], inds)
                assert len(out["imgs"]) == len(inds)  # really decoded
                seen.add(int(inds[0]))
            if draws > 1:
                assert len(seen) > 1, "random temporal offsets within the range"
    # A row without a range still samples the whole (short) clip.
    plain = DATASETS.build(dict(type="AutoXVideoDataset", ann_file=str(lists), pipeline=recipe.train_pipeline(cfg)[:3]))
    assert plain.get_data_info(0).get("time_range") is None and plain[0]["total_frames"] == 16


def test_prepare_keeps_time_ranges_in_lists(tmp_path: Path) -> None:
    from autox_video.data.prepare import rewrite_list

    src = tmp_path / "in.txt"
    src.write_text("a b.avi 1.5 4 2\nc.avi 3\nd.avi 0 inf\n")
    rewrite_list(src, tmp_path / "out.txt", {"a b.avi": "a b.mp4", "c.avi": "c.mp4", "d.avi": "d.mp4"})
    assert (tmp_path / "out.txt").read_text() == "a b.mp4 1.5 4 2\nc.mp4 3\nd.mp4 0 inf\n"


def _truth(t: float) -> int:
    edge = 0.0
    for cls, seconds in PARTS:
        edge += seconds
        if t < edge:
            return CLASSES.index(cls)
    raise AssertionError(t)


def test_seconds_shots_and_vertex_output(trained: Path, long_video: tuple[Path, list[float]], tmp_path: Path) -> None:
    root, cuts = long_video
    (root / "list.txt").write_text("long.mp4\n")
    out = tmp_path / "out" / "results.json"
    res = cli(
        "test", "--config", str(trained), "--data-root", str(root), "--ann-file-test", str(root / "list.txt"),
        "--test-results-path", str(out), "--granularity", "second,shot,segment", "--format", "vertex",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    pred = json.loads(out.read_text())["predictions"][0]
    assert {"label", "score", "topk", "probs", "segments", "shots", "seconds"} <= set(pred)
    seconds = pred["seconds"]
    assert len(seconds) == 20 and seconds[0]["start"] == 0.0 and seconds[-1]["end"] == 20.0
    # Away from change points (the 1-s clip centred on the second does not cross a cut).
    clear = [s for s in seconds if all(c <= s["start"] or c >= s["end"] for c in cuts)]
    right = sum(s["label"] == _truth(s["start"]) for s in clear)
    assert right >= 0.9 * len(clear), [s["label"] for s in seconds]
    found = [s["start"] for s in pred["shots"][1:]]
    for cut in cuts:  # every cut found within 2 frames
        assert min(abs(f - cut) for f in found) <= 2 / FPS, (cut, found)
    assert pred["segments"][0]["start"] == 0.0 and pred["segments"][0]["end"] == 20.0

    # Vertex AI output beside results.json: one entry per kept label and time, back to our items.
    lines = [json.loads(x) for x in (out.parent / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["instance"]["content"] == "long.mp4"
    entries = lines[0]["prediction"]
    kinds = {"segment-classification": "segments", "shot-classification": "shots",
             "one-sec-interval-classification": "seconds"}  # fmt: skip
    for kind, key in kinds.items():
        mine = [e for e in entries if e["type"] == kind]
        assert len(mine) == sum(len(i["topk"]) for i in pred[key])
        top = {(e["timeSegmentStart"], e["timeSegmentEnd"]): e for e in reversed(mine)}  # first per time = top-1
        for item in pred[key]:
            e = top[(f"{item['start']:g}s", f"{item['end']:g}s")]
            assert e["id"] == str(item["label"]) and e["displayName"] == CLASSES[item["label"]]
            assert math.isclose(e["confidence"], item["score"])


def test_vertex_jsonl_input_with_ranges_and_filters(trained: Path, long_video: tuple[Path, list[float]],
                                                    tmp_path: Path) -> None:  # fmt: skip
    root, _ = long_video
    jsonl = tmp_path / "batch.jsonl"
    rows = [
        {"content": "long.mp4", "mimeType": "video/mp4", "timeSegmentStart": "4s", "timeSegmentEnd": "8.0s"},
        {"content": str(root / "long.mp4"), "mimeType": "video/mp4", "timeSegmentStart": "12s",
         "timeSegmentEnd": "Infinity"},
    ]  # fmt: skip
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results.json"
    res = cli(
        "test", "--config", str(trained), "--data-root", str(root), "--ann-file-test", str(jsonl),
        "--test-results-path", str(out), "--granularity", "second,segment", "--confidence-threshold", "0.3",
        "--max-predictions", "1", "--format", "vertex",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    preds = json.loads(out.read_text())["predictions"]
    assert [(p["start"], p["end"]) for p in preds] == [(4.0, 8.0), (12.0, 20.0)]
    assert [s["start"] for s in preds[0]["seconds"]] == [4.0, 5.0, 6.0, 7.0]
    assert preds[0]["label"] == CLASSES.index("grow")
    for p in preds:
        for s in p["seconds"] + p["segments"]:
            assert len(s["topk"]) <= 1 and all(c >= 0.3 for _, c in s["topk"])
    back = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [b["instance"] for b in back] == rows  # the input instances are echoed


def test_range_past_the_end_is_one_line_naming_file_line(trained: Path, long_video: tuple[Path, list[float]],
                                                         tmp_path: Path) -> None:  # fmt: skip
    root, _ = long_video
    lst = tmp_path / "list.txt"
    lst.write_text("long.mp4 0 5 1\nlong.mp4 18 25 2\n")
    res = cli("test", "--config", str(trained), "--data-root", str(root), "--ann-file-test", str(lst),
              "--test-results-path", str(tmp_path / "r.json"))  # fmt: skip
    assert res.returncode == 2
    err = [x for x in res.stderr.splitlines() if x.startswith("autox-video: error")]
    assert len(err) == 1 and f"{lst}:2:" in err[0] and "past the end" in err[0], res.stderr[-2000:]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a.mp4 5 2 1", "not after start"),
        ("a.mp4 x 2 1", "not a number"),
        ("a.mp4 1 2 3 4", "fields"),
    ],
)
def test_bad_ranges_in_lists(tmp_path: Path, line: str, words: str) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"a.mp4 0\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"^{lst}:2: .*{words}"):
        read_annotations(lst, tmp_path, check_exists=False, require_labels=False)


def test_list_lines_with_and_without_ranges(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("a b.mp4 3\na b.mp4 1.5 4\na b.mp4 1.5 4 2\nc.avi 0 inf\n")
    got = [(s.path, s.label, s.start, s.end) for s in read_annotations(lst, tmp_path, check_exists=False,
                                                                       require_labels=False)]  # fmt: skip
    assert got == [("a b.mp4", 3, None, None), ("a b.mp4", None, 1.5, 4.0), ("a b.mp4", 2, 1.5, 4.0),
                   ("c.avi", None, 0.0, None)]  # fmt: skip


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"content": "gs://b/v.mp4"}, "copy the videos to S3"),
        ({"content": "v.mp4", "timeSegmentStart": "3s", "timeSegmentEnd": "1s"}, "not after"),
        ({"content": "v.mp4", "timeSegmentEnd": "soon"}, "not a time"),
        ({"mimeType": "video/mp4"}, "no 'content'"),
    ],
)
def test_bad_vertex_instances(tmp_path: Path, row: dict, words: str) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"content": "ok.mp4"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(AnnotationError, match=rf"^{jsonl}:2: .*{words}"):
        read_annotations(jsonl, tmp_path, check_exists=False, require_labels=False)


def test_long_video_holds_a_bounded_number_of_frames(trained: Path, tmp_path: Path) -> None:
    """20 minutes at 32x32, 4 fps, every second scored: the frames held at once do not grow with the video."""
    import torch

    from autox_video.config import load_config
    from autox_video.data.annotations import Sample
    from autox_video.inference.predict import _model_setup, build_model
    from autox_video.inference.timeline_run import TimelineStats, make_scorer, predict_timelines

    minutes = [("move_left", 60.0), ("grow", 60.0)] * 10
    make_timeline_video(tmp_path / "long.mp4", minutes, size=32, fps=4, seed=1, easy=True)
    cfg = load_config(trained, {"granularity": ["second", "shot"]})
    from autox_video.training.checkpoints import load_state, resumable_torch_load

    with resumable_torch_load():
        ckpt = load_state(Path(cfg.work_dir) / "epoch_3.pth")
    model_cfg, n, names = _model_setup(cfg, ckpt, Path("epoch_3.pth"))
    model = build_model(model_cfg, n, ckpt["state_dict"], Path("epoch_3.pth"))
    stats = TimelineStats()
    score = make_scorer(model, model_cfg, torch.device("cpu"), None)
    entries = predict_timelines(
        [Sample("long.mp4", None, 1)], tmp_path, cfg, model_cfg, score, names=names, batch=4, list_name="list",
        stats=stats,
    )  # fmt: skip
    assert len(entries[0]["seconds"]) == 1200 and stats.frames_decoded == 4800
    assert len(entries[0]["shots"]) == 20
    # Held frames: the windows open at once (a clip spans ~4 s at 4 fps) plus one batch of 4 clips of 8.
    assert stats.peak_frames <= 4 * model_cfg.resolved_clip_len + 8 * model_cfg.resolved_clip_len, stats


def test_inference_job_granularity_reaches_the_trainer_config() -> None:
    from autox_video.spec import trainer_config
    from autox_video.spec.inference import VideoInferenceJobSpec

    spec = VideoInferenceJobSpec.model_validate(
        {"model": {"checkpoint": "s3://bkt/m.pth", "backbone": "swin_micro"}, "dataset": {"videos": "s3://bkt/v/"},
         "output": "s3://bkt/o/", "inference": {"granularity": ["second", "shot"], "interval": 2.0,
                                                "confidenceThreshold": 0.2, "maxPredictions": 3}}
    )  # fmt: skip
    cfg = trainer_config.inference_config(spec, checkpoint="s3://bkt/m.pth")
    assert (cfg.granularity, cfg.interval, cfg.confidence_threshold, cfg.max_predictions) == (
        ["second", "shot"], 2.0, 0.2, 3)  # fmt: skip


def test_labelled_timeline_reports_per_second_and_segment_numbers_with_strips_in_chromium(
    trained: Path, long_video: tuple[Path, list[float]], tmp_path: Path
) -> None:
    import shutil
    import tempfile

    from test_report import DevTools, _start_chromium

    root, _ = long_video
    lst = tmp_path / "timeline.txt"
    lst.write_text("".join(f"long.mp4 {a:g} {b:g} {CLASSES.index(c)}\n" for c, a, b in _ranges()))
    out = tmp_path / "out" / "results.json"
    res = cli("test", "--config", str(trained), "--data-root", str(root), "--ann-file-test", str(lst),
              "--test-results-path", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    preds = json.loads(out.read_text())["predictions"]
    assert [len(p["seconds"]) for p in preds] == [4, 4, 4, 3, 5]  # a labelled timeline is scored per second
    report = json.loads((out.parent / "report.json").read_text())
    t = report["timeline"]
    assert report["per_second_accuracy"] == t["per_second_accuracy"] >= 0.8, t["videos"]
    assert t["seconds"] == 20 and sum(map(sum, t["confusion_matrix"])) == 20
    assert t["segments_true"] == 5 and t["segment_precision"] is not None and t["segment_recall"] >= 0.6
    assert [v["video"] for v in t["videos"]] == ["long.mp4"]
    if shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium for the page check")
    html = out.parent / "report.html"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc, ws_url = _start_chromium(Path(profile))
        try:
            page = DevTools(ws_url)
            page.call("Page.enable")
            page.call("Page.navigate", url=html.as_uri())
            page.wait_event("Page.loadEventFired")
            strips = page.js(
                "Array.from(document.querySelectorAll('#timelines svg'), s => [s.getBoundingClientRect().width,"
                " s.querySelectorAll('rect.pred').length, s.querySelectorAll('rect.true').length])"
            )
            fills = page.js(
                "Array.from(document.querySelectorAll('#timelines rect.true'),"
                " r => [r.dataset.label, getComputedStyle(r).fill])"
            )
            resources = page.js("performance.getEntriesByType('resource').map(e => e.name)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert len(strips) == 1 and strips[0][0] > 500 and strips[0][1:] == [20, 20], strips
    colours = dict(fills)
    assert len(colours) == 3 and len(set(colours.values())) == 3, colours  # one colour per class
    assert all(u.startswith("data:") for u in resources), resources  # still self-contained


def test_api_transform_with_granularity_second_returns_and_writes_the_timeline(
    trained: Path, long_video: tuple[Path, list[float]], tmp_path: Path
) -> None:
    import yaml

    from autox_video import AutoXVideo

    root, _ = long_video
    (tmp_path / "list.txt").write_text("long.mp4\n")
    out = tmp_path / "results.json"
    model = AutoXVideo(**yaml.safe_load(trained.read_text()))
    probs = model.transform(str(root), str(tmp_path / "list.txt"), output_path=str(out), granularity="second")
    assert len(probs) == 1 and len(probs[0]) == len(CLASSES)
    assert model.last_prediction is not None
    seconds = model.last_prediction.predictions[0]["seconds"]
    assert len(seconds) == 20 and [s["start"] for s in seconds[:3]] == [0.0, 1.0, 2.0]
    written = json.loads(out.read_text())
    assert written["granularity"] == ["second"] and written["predictions"][0]["seconds"] == seconds


def test_a_range_past_the_end_of_the_video_names_the_file_and_range(long_video: tuple[Path, list[float]]) -> None:
    from autox_video.data.fast_decode import FastDecordInit
    from autox_video.errors import DataError

    root, _ = long_video
    path = str(root / "long.mp4")
    with pytest.raises(DataError, match=r"time range 25-30 s starts past the end of .*long\.mp4.* \(20\.000 s long\)"):
        FastDecordInit(short_side=None).transform(dict(filename=path, start_index=0, time_range=(25.0, 30.0)))
    out = FastDecordInit(short_side=None).transform(dict(filename=path, start_index=0, time_range=(18.0, None)))
    assert (out["start_index"], out["total_frames"]) == (18 * FPS, 2 * FPS)  # an open end runs to the last frame
