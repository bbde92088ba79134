"""An evaluation report as one self-contained HTML page: the headline metrics, the ablation as a
chart, where the right SKU landed, the SKU pairs most often confused, and the worst queries as
pictures (the query photo with the box searched, the first results with every signal's score, and
where the right SKU ranked).  Thumbnails are inlined, so the file opens anywhere."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from core.types import SIGNALS
from service.dedup_html import thumbnail_data_uri

WORST = 20
"""Queries shown as pictures, worst first."""
CONFUSED = 12
"""Most confused (right SKU, first result) pairs shown."""
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#1d1d1f}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.muted{color:#666} .cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:.3rem 0 1rem}
.card{background:#f4f6fa;border-radius:8px;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.6rem} .card span{color:#666;font-size:.85rem}
.chart text{font-size:12px;fill:#333} .chart .all{fill:#0a6cff} .chart .pk{fill:#ff9f0a}
.query{border:1px solid #ddd;border-radius:8px;padding:.7rem;margin:1rem 0}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start}
figure{margin:0;width:150px;font-size:12px;overflow-wrap:anywhere}
figure img{width:150px;height:150px;object-fit:contain;background:#f2f2f2;border-radius:4px;display:block}
figure.hit img{outline:3px solid #2a9d3a} figure.miss img{outline:2px solid #d33}
figure.q img{outline:2px solid #333}
.sig{display:grid;grid-template-columns:auto 1fr auto;gap:0 .3rem;align-items:center;font-size:11px;color:#555}
.sig i{display:block;height:5px;background:#0a6cff;border-radius:2px}
table{border-collapse:collapse} td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
td img{width:56px;height:56px;object-fit:contain;background:#f2f2f2;vertical-align:middle}
.missing{width:150px;height:150px;background:#eee}
"""


def render_eval_report(report: dict, pictures: Mapping[str, Path], title: str | None = None) -> str:
    """``report``: what ``skulens eval`` writes with ``--json``; ``pictures``: each gallery SKU's
    picture file (its first), for the thumbnails."""
    e = html.escape
    title = title or f"{report['protocol']} on {report['split']}: where search fails"
    thumbs: dict[tuple, str | None] = {}

    def pic(path: Path | str | None, caption: str, cls: str = "", box: list | None = None,
            size: list | None = None, extra: str = "") -> str:
        key = (str(path), tuple(box or ()))
        if key not in thumbs:
            thumbs[key] = thumbnail_data_uri(Path(path), box, size, side=300) if path else None
        uri = thumbs[key]
        img = f"<img src='{uri}' alt='{e(caption)}'>" if uri else "<div class='missing'></div>"
        return f"<figure class='{cls}'>{img}<figcaption>{e(caption)}{extra}</figcaption></figure>"

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_STYLE}</style></head>"
             f"<body><h1>{e(title)}</h1>", _provenance(report), _headline(report)]
    if report.get("ablation"):
        parts.append(_ablation_chart(report))
    rows = report.get("per_query", [])
    by_sku = "rank" in (rows[0] if rows else {})
    if by_sku:
        parts.append(_landing(rows))
        parts.append(_confused(rows, pictures))
    worst = _worst(rows, by_sku)
    missed = f" of the {sum(1 for r in rows if r.get('rank') != 1)} whose right SKU was not first" if by_sku else ""
    parts.append(f"<h2 id='worst'>The {len(worst)} worst queries{missed}</h2>")
    parts.append("<p class='muted'>The photo with the box searched (red), its first results (green: the right "
                 "SKU) with each signal's score, and where the right SKU ranked.</p>" if worst else
                 "<p>Every query found its right SKU first.</p>")
    for row in worst:
        parts.append(_query_block(row, pictures, pic, by_sku))
    parts.append("</body></html>")
    return "".join(parts)


def _provenance(report: dict) -> str:
    e = html.escape
    cfg = report.get("config", {})
    models = report.get("models", {})
    bits = [f"split <b>{e(str(report['split']))}</b>", f"{report['queries']} queries",
            f"configuration {e(str(cfg.get('name', '?')))}",
            f"weights {e(', '.join(f'{k} {v:g}' for k, v in cfg.get('weights', {}).items()))}",
            f"embedder {e(str(models.get('embedder', '?')))}", f"{e(str(report.get('date', '')))}"]
    return f"<p class='muted'>{' · '.join(bits)}</p>"


def _headline(report: dict) -> str:
    def cards(metrics: dict | None, label: str) -> str:
        return (f"<p class='muted'>{label}</p><div class='cards'>"
                + "".join(f"<div class='card'><b>{v:.3f}</b><span>{k}</span></div>" for k, v in (metrics or {}).items())
                + "</div>")

    out = "<h2>Headline</h2>" + cards(report["metrics"], f"All {report['queries']} queries")
    if report.get("packaged"):
        out += cards(report["packaged"], "Packaged products")
    for name, m in report.get("baselines", {}).items():
        out += f"<p class='muted'>baseline {html.escape(name)}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) + "</p>"
    return out


def _ablation_chart(report: dict) -> str:
    """One bar per ablation row: its first metric (and packaged R@1 beside it), as inline SVG."""
    rows = report["ablation"]
    key = next(iter(rows[0]["metrics"]))
    packaged = "packaged" in rows[0]
    label_w, bar_w, line = 290, 520, 34 if packaged else 22
    height = line * len(rows) + 30
    top = max([r["metrics"][key] for r in rows] + [r["packaged"][key] for r in rows if r.get("packaged")] + [1e-9])
    parts = [f"<h2>Ablation: {html.escape(key)} as each stage and signal is added</h2>",
             f"<svg class='chart' role='img' aria-label='ablation chart' width='{label_w + bar_w + 70}' "
             f"height='{height}'>"]
    for i, r in enumerate(rows):
        y = 10 + i * line
        value = r["metrics"][key]
        parts.append(f"<text x='{label_w - 8}' y='{y + 12}' text-anchor='end'>{html.escape(r['config'])}</text>"
                     f"<rect class='all' x='{label_w}' y='{y}' width='{bar_w * value / top:.1f}' height='14'/>"
                     f"<text x='{label_w + bar_w * value / top + 4:.1f}' y='{y + 12}'>{value:.3f}</text>")
        if packaged and r.get("packaged"):
            pv = r["packaged"][key]
            parts.append(f"<rect class='pk' x='{label_w}' y='{y + 15}' width='{bar_w * pv / top:.1f}' height='9'/>"
                         f"<text x='{label_w + bar_w * pv / top + 4:.1f}' y='{y + 24}'>{pv:.3f}</text>")
    parts.append("</svg>")
    if packaged:
        parts.append("<p class='muted'>Blue: all queries; orange: packaged products.</p>")
    return "".join(parts)


def _landing(rows: list[dict]) -> str:
    buckets: Counter[str] = Counter()
    for r in rows:
        rank = r.get("rank")
        buckets["not found" if rank is None else "1" if rank == 1 else "2-5" if rank <= 5 else
                 "6-10" if rank <= 10 else "11-50" if rank <= 50 else "over 50"] += 1
    order = ["1", "2-5", "6-10", "11-50", "over 50", "not found"]
    cells = "".join(f"<td>{buckets[b]} <span class='muted'>({100 * buckets[b] / max(1, len(rows)):.0f}%)</span></td>"
                    for b in order)
    head = "".join(f"<th>{b}</th>" for b in order)
    return (f"<h2>Where the right SKU landed</h2><table><tr><th>rank</th>{head}</tr>"
            f"<tr><th>queries</th>{cells}</tr></table>")


def _confused(rows: list[dict], pictures: Mapping[str, Path]) -> str:
    pairs = Counter((r["label"], r["top"][0]) for r in rows if r.get("rank") != 1 and r.get("top"))
    if not pairs:
        return ""
    out = ["<h2>SKUs most often confused</h2><table><tr><th>the right SKU</th><th>ranked first instead</th>"
           "<th>queries</th></tr>"]
    for (right, wrong), n in pairs.most_common(CONFUSED):
        out.append(f"<tr><td>{_small(pictures.get(right), right)}</td><td>{_small(pictures.get(wrong), wrong)}</td>"
                   f"<td>{n}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _small(path: Path | None, name: str) -> str:
    uri = thumbnail_data_uri(path, side=112) if path else None
    img = f"<img src='{uri}' alt=''>" if uri else ""
    return f"{img} {html.escape(name)}"


def _worst(rows: list[dict], by_sku: bool) -> list[dict]:
    if by_sku:
        def badness(r: dict) -> tuple:
            return (r["rank"] is None, r["rank"] or 0, -(r.get("top_scores") or [0])[0])
    else:
        def badness(r: dict) -> tuple:
            return (-r.get("precision@10", 0.0),)
    return sorted((r for r in rows if not by_sku or r.get("rank") != 1), key=badness, reverse=True)[:WORST]


def _signals(entry: dict) -> str:
    cells = []
    for name in SIGNALS:
        v = entry.get("signals", {}).get(name, 0.0)
        cells.append(f"<span>{name}</span><i style='width:{100 * v:.0f}%'></i><span>{v:.2f}</span>")
    return f"<div class='sig'>{''.join(cells)}</div>"


def _query_block(row: dict, pictures: Mapping[str, Path], pic, by_sku: bool) -> str:
    e = html.escape
    name = Path(row["path"]).name
    if by_sku:
        rank = row.get("rank")
        where = f"right SKU <b>{e(row['label'])}</b> " + (f"ranked {rank}" if rank else "not among the candidates")
    else:
        where = f"label <b>{e(row['label'])}</b>, precision@10 {row.get('precision@10', 0):.1f}"
    parts = [f"<section class='query'><p>{e(name)} · {where}</p><div class='row'>",
             pic(row["path"], "the photo", "q", row.get("box"), row.get("size"))]
    for entry in row.get("explained", []):
        hit = entry["sku"] == row["label"]
        extra = f"<br>#{entry['rank']} · score {entry['score']:.3f}{_signals(entry)}"
        parts.append(pic(pictures.get(entry["sku"]), entry["sku"], "hit" if hit else "miss", extra=extra))
    right = row.get("right")
    if by_sku and right and right["rank"] > len(row.get("explained", [])):
        extra = f"<br>the right one: #{right['rank']} · score {right['score']:.3f}{_signals(right)}"
        parts.append(pic(pictures.get(right["sku"]), right["sku"], "hit", extra=extra))
    elif by_sku and not right:
        parts.append(pic(pictures.get(row["label"]), f"{row['label']} (the right one; not a candidate)", "hit"))
    parts.append("</div></section>")
    return "".join(parts)
