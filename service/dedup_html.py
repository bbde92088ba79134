"""The near-duplicate report as one self-contained HTML page (thumbnails inlined)."""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

THUMB = 160
_STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem} .group{border:1px solid #ccc;border-radius:6px;padding:.8rem;margin:1rem 0}
.images{display:flex;flex-wrap:wrap;gap:.6rem} figure{margin:0;width:170px;font-size:12px;word-break:break-all}
figure img{max-width:160px;max-height:160px;display:block;background:#eee}
table{border-collapse:collapse;margin-top:.5rem} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
.exact{color:#060}.phash{color:#036}.visual{color:#850}.missing{width:160px;height:60px;background:#eee}
"""


def thumbnail_data_uri(path: Path, box: list[float] | None = None, size: list[int] | None = None,
                       side: int = THUMB) -> str | None:
    """A small JPEG of the image as a data: URI, or None when the file cannot be read; ``box``
    (``[x0, y0, x1, y1]`` in an image of ``size``, default the file's own) is drawn on it."""
    from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
        width, height = im.size
        im.thumbnail((side, side))
        if box is not None:
            sx, sy = im.width / (size or [width, height])[0], im.height / (size or [width, height])[1]
            ImageDraw.Draw(im).rectangle([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy],
                                         outline=(255, 40, 40), width=max(2, side // 80))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        log.info("no thumbnail for %s: %s", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def render_report(report: dict, resolve: Callable[[dict], Path], title: str) -> str:
    """``report``: the dedup JSON; ``resolve(image) -> path`` of each image's file for its thumbnail."""
    e = html.escape
    groups = report["groups"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
             f"</head><body><h1>{e(title)}</h1><p>{len(groups)} group(s) of near-duplicate images; "
             f"{len(report['skipped'])} item(s) skipped.</p>"]
    for n, group in enumerate(groups, 1):
        skus = ", ".join(group["skus"]) or "(not in the catalogue)"
        parts.append(f"<section class='group'><h2>Group {n}: {len(group['images'])} images, SKUs {e(skus)}</h2>"
                     "<div class='images'>")
        for im in group["images"]:
            uri = thumbnail_data_uri(resolve(im))
            pic = f"<img src='{uri}' alt=''>" if uri else "<div class='missing'></div>"
            label = f"{im['sku']} · image {im['image_id']}" if im["sku"] is not None else im["file"]
            parts.append(f"<figure>{pic}<figcaption>{e(str(label))}</figcaption></figure>")
        parts.append("</div><table><tr><th>a</th><th>b</th><th>layer</th><th>score</th></tr>")
        for p in group["pairs"]:
            parts.append(f"<tr><td>{e(str(p['a']))}</td><td>{e(str(p['b']))}</td>"
                         f"<td class='{e(p['layer'])}'>{e(p['layer'])}</td><td>{p['score']:.3f}</td></tr>")
        parts.append("</table></section>")
    if report["skipped"]:
        parts.append("<h2>Skipped</h2><ul>")
        parts.extend(f"<li>{e(s['item'])}: {e(s['reason'])}</li>" for s in report["skipped"])
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
