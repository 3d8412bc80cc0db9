"""report.html: one self-contained page (inline CSS, JS and PNG; a CSP forbids any fetch)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

# The page may load nothing: images are data: URIs, style and script are inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:22px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th.sort{cursor:pointer;user-select:none;background:#f4f4f4}th.sort:after{content:" \\2195";color:#999}
img{max-width:100%;height:auto}.muted{color:#777}pre{background:#f7f7f7;padding:8px;overflow:auto}
.strip{margin:10px 0}.strip svg{width:100%;height:34px;display:block;background:#f4f4f4}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:middle}
"""

# Click a header to sort by it (numbers by value, empty cells last); click again to reverse.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,col){
    th.classList.add("sort");
    th.addEventListener("click",function(){
      var body=t.tBodies[0],rows=Array.from(body.rows),asc=th.dataset.asc!=="1";
      th.dataset.asc=asc?"1":"0";
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
        if(x===undefined){x=a.cells[col].textContent;y=b.cells[col].textContent;
          return asc?x.localeCompare(y):y.localeCompare(x);}
        x=x===""?NaN:+x;y=y===""?NaN:+y;
        if(isNaN(x))return isNaN(y)?0:1;if(isNaN(y))return -1;
        return asc?x-y:y-x;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""

# Config keys shown up front; the whole config follows in a collapsed block.
KEY_CONFIG = ("backbone", "num_class", "clip_len", "frame_interval", "img_size", "epoch", "lr", "data_root",
              "ann_file_train", "ann_file_val", "work_dir")  # fmt: skip


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _cell(value: float | int | None, text: str) -> str:
    v = "" if value is None else repr(value)
    return f'<td class="n" data-v="{v}">{escape(text)}</td>'


def _table(head: list[str], rows: list[str], *, table_id: str, sortable: bool = False) -> str:
    cls = ' class="sortable"' if sortable else ""
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(head)}" class="muted">none</td></tr>'
    return f'<table id="{table_id}"{cls}><thead><tr>{ths}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _topk(v: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{names[c]} {s:.2f}" for c, s in v["topk"])


def _videos(videos: list[dict[str, Any]], names: list[str], table_id: str) -> str:
    rows = [
        "<tr>"
        + f"<td>{escape(str(v['video']))}</td><td>{escape(v['true_name'])}</td>"
        + f"<td>{escape(v['predicted_name'])}</td>"
        + _cell(v["score"], f"{v['score']:.3f}")
        + f"<td>{escape(_topk(v, names))}</td></tr>"
        for v in videos
    ]
    return _table(["video", "true", "predicted", "confidence", "top-k"], rows, table_id=table_id, sortable=True)


def _source(src: dict[str, Any]) -> str:
    items = [("model", src.get("model")), ("checkpoint", src.get("checkpoint"))]
    if src.get("checkpoint_source"):
        items.append(("checkpoint from", src["checkpoint_source"]))
    if src.get("checkpoint_epoch") is not None:
        items.append(("checkpoint epoch", src["checkpoint_epoch"]))
    items.append(("results", src.get("results")))
    if pre := src.get("pretrained"):
        items.append(("pretrained from", pre.get("source")))
        items.append(("pretrained sha256", pre.get("sha256")))
        licence = str(pre.get("licence"))
        items.append(
            ("pretrained licence", licence + (" (non-commercial use only)" if pre.get("non_commercial") else ""))
        )
    config = src.get("config") or {}
    items += [(k, config[k]) for k in KEY_CONFIG if config.get(k) is not None]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in items)
    full = ""
    if config:
        full = f"<details><summary>full config</summary><pre>{escape(json.dumps(config, indent=1))}</pre></details>"
    return f'<table id="source">{rows}</table>{full}'


def colour(label: int, n: int) -> str:
    """A class's colour on the timeline strips: hues spread evenly (golden-ratio steps when there are many)."""
    hue = (label * 360 / n) if n <= 12 else (label * 137.508) % 360
    return f"hsl({hue:.0f},65%,{50 if label % 2 == 0 else 38}%)"


def _strip(video: dict[str, Any], names: list[str]) -> str:
    """One video's seconds: predicted classes on top, the truth under it (inline SVG, time on x)."""
    seconds = video["seconds"]
    t0, t1 = seconds[0][0], max(s[1] for s in seconds)
    rects = []
    for start, end, pred, true in seconds:
        x, w = start - t0, end - start
        for cls, y, label, kind in ((pred, 0, "predicted", "pred"), (true, 18, "true", "true")):
            tip = f"{start:g}-{end:g} s {label} {names[cls]}"
            rects.append(
                f'<rect class="{kind}" data-label="{cls}" x="{x:g}" y="{y}" width="{w:g}" height="16" '
                f'fill="{colour(cls, len(names))}"><title>{escape(tip)}</title></rect>'
            )
    head = (
        f"{video['video']}: {t0:g}-{t1:g} s, {_pct(video['accuracy'])} of seconds right (top: predicted, below: true)"
    )
    return (
        f'<div class="strip"><div>{escape(head)}</div>'
        f'<svg viewBox="0 0 {t1 - t0:g} 34" preserveAspectRatio="none" shape-rendering="crispEdges" role="img" '
        f'aria-label="{escape(head)}">{"".join(rects)}</svg></div>'
    )


def _timeline(t: dict[str, Any] | None, names: list[str]) -> str:
    """The labelled timeline's section: per-second and segment numbers, confusion over seconds, strips."""
    if not t:
        return ""
    cards = [
        ("per-second accuracy", _pct(t["per_second_accuracy"])),
        (f"segment precision (IoU {t['segment_iou']:g})", _pct(t["segment_precision"])),
        (f"segment recall (IoU {t['segment_iou']:g})", _pct(t["segment_recall"])),
        ("seconds", str(t["seconds"])),
    ]
    card_html = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
    used = sorted({c for v in t["videos"] for s in v["seconds"] for c in s[2:]})
    legend = "".join(f'<span><i style="background:{colour(c, len(names))}"></i>{escape(names[c])}</span>' for c in used)
    cm = t["confusion_matrix"]
    keep = [i for i in range(len(cm)) if any(cm[i]) or any(r[i] for r in cm)]
    rows = [
        f"<tr><th>{escape(names[i])}</th>" + "".join(_cell(cm[i][j], str(cm[i][j])) for j in keep) + "</tr>"
        for i in keep
    ]
    head = "".join(f"<th>{escape(names[j])}</th>" for j in keep)
    matrix = (
        f'<table id="second-confusion"><thead><tr><th>true &#x2193; / predicted &#x2192;</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    strips = "".join(_strip(v, names) for v in t["videos"])
    return f"""<h2>Timeline</h2>
<div class="cards" id="timeline-summary">{card_html}</div>
<p class="muted">Each second of a labelled range counts once; a segment is a run of one class, matched to a
true one of the same class at temporal IoU &ge; {t["segment_iou"]:g}.</p>
<h3>Confusion over seconds</h3>
{matrix}
<h3>Videos</h3>
<div class="legend">{legend}</div>
<div id="timelines">{strips}</div>
"""


def render(data: dict[str, Any], *, confusion_png_b64: str) -> str:
    """The report page for build_report()'s dict and the confusion matrix PNG (base64)."""
    s, names = data["summary"], data["classes"]
    top5_key = next(k for k in s if k.startswith("top") and k != "top1")
    cards = [
        ("top-1", _pct(s["top1"])),
        (top5_key.replace("top", "top-"), _pct(s[top5_key])),
        ("mean class accuracy", _pct(s["mean_class_accuracy"])),
        ("videos", str(s["videos"])),
        ("classes", str(s["classes"])),
        ("misclassified", str(data["misclassified"]["count"])),
    ]
    card_html = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
    per_class = [
        "<tr>"
        + f"<td>{escape(c['name'])}</td>"
        + _cell(c["precision"], _num(c["precision"]))
        + _cell(c["recall"], _num(c["recall"]))
        + _cell(c["f1"], _num(c["f1"]))
        + _cell(c["support"], str(c["support"]))
        + "</tr>"
        for c in data["per_class"]
    ]
    confusions = [
        "<tr>"
        + f"<td>{escape(c['true_name'])}</td><td>{escape(c['predicted_name'])}</td>"
        + _cell(c["count"], str(c["count"]))
        + _cell(c["rate"], _pct(c["rate"]))
        + "</tr>"
        for c in data["top_confusions"]
    ]
    pairs = [
        "<tr>"
        + f"<td>{escape(p['a_name'])}</td><td>{escape(p['b_name'])}</td>"
        + _cell(p["count"], str(p["count"]))
        + _cell(p["a_as_b"], str(p["a_as_b"]))
        + _cell(p["b_as_a"], str(p["b_as_a"]))
        + "</tr>"
        for p in data["confused_pairs"]
    ]
    notes = []
    if s.get("unlabelled"):
        notes.append(f"{s['unlabelled']} predictions without a true label are not counted.")
    if s.get("skipped"):
        notes.append(f"{s['skipped']} unreadable videos were skipped (listed in results.json).")
    wrong = data["misclassified"]
    title = f"Evaluation report: {s['videos']} videos, {s['classes']} classes"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">generated {escape(data["generated"])} from {escape(str(data["source"]["results"]))}</p>
<div class="cards" id="summary">{card_html}</div>
<p class="muted">{escape(" ".join(notes))}</p>
{_timeline(data.get("timeline"), names)}
<h2>Confusion matrix</h2>
<img id="confusion-matrix" alt="confusion matrix, rows normalised per true class"
 src="data:image/png;base64,{confusion_png_b64}">
<h3>Largest confusions</h3>
{_table(["true class", "predicted as", "videos", "share of true class"], confusions, table_id="top-confusions")}
<h2>Per class</h2>
<p class="muted">Click a column header to sort.</p>
{_table(["class", "precision", "recall", "F1", "support"], per_class, table_id="per-class", sortable=True)}
<h2>Most confused pairs</h2>
{_table(["class A", "class B", "videos mixed up", "A as B", "B as A"], pairs, table_id="confused-pairs")}
<h2>Misclassified videos</h2>
<p class="muted">{wrong["count"]} misclassified; the {len(wrong["most_confident"])} most confident shown.</p>
{_videos(wrong["most_confident"], names, "misclassified")}
<h2>Least confident videos</h2>
{_videos(data["least_confident"], names, "least-confident")}
<h2>Model</h2>
{_source(data["source"])}
<script>{SCRIPT}</script>
</body></html>
"""
