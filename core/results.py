"""What a search produces: an image's analysis, the ranker's candidates, and the result groups."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from core.types import Box, LocalFeatures, Match, ObjectFeatures, OcrText, Palette, Tags


@dataclass
class Candidate:
    sku: str
    image_id: int | None
    embedding: float


@dataclass
class Analysis:
    width: int
    height: int
    boxes: list[Box]
    objects: list[ObjectFeatures]
    timings: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({"w": self.width, "h": self.height, "boxes": [_box_json(b) for b in self.boxes],
                           "objects": [_object_json(o) for o in self.objects], "timings": self.timings}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Analysis":
        d = json.loads(data)
        return cls(d["w"], d["h"], [_box_from(b) for b in d["boxes"]], [_object_from(o) for o in d["objects"]],
                   d.get("timings", {}))


@dataclass
class ResultGroup:
    """The matches for one query object (the main one, or each box with ``all_objects``)."""

    features: ObjectFeatures | None
    matches: list[Match]
    words: list[tuple[str, float]] = field(default_factory=list)  # the catalogue's words nearest its picture


@dataclass
class SearchResult:
    analysis: Analysis | None
    groups: list[ResultGroup]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. why a filter matched nothing
    weights: dict[str, float] = field(default_factory=dict)  # the signal weights it ranked with


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, np.float32).tobytes()).decode()


def _box_json(b: Box) -> dict:
    return {"xyxy": [b.x1, b.y1, b.x2, b.y2], "score": b.score, "label": b.label}


def _box_from(d: dict) -> Box:
    x1, y1, x2, y2 = d["xyxy"]
    return Box(x1, y1, x2, y2, d["score"], d["label"])


def _object_json(o: ObjectFeatures) -> dict:
    return {"box": _box_json(o.box), "vectors": {r: _b64(v) for r, v in o.vectors.items()},
            "palette": o.palette.to_json(), "ocr": o.ocr.to_json(), "tags": o.tags.to_json(),
            "coverage": o.mask_coverage,
            **({"local": base64.b64encode(o.local.to_bytes()).decode()} if o.local is not None else {})}


def _object_from(d: dict) -> ObjectFeatures:
    vectors = {r: np.frombuffer(base64.b64decode(v), np.float32).copy() for r, v in d["vectors"].items()}
    local = LocalFeatures.from_bytes(base64.b64decode(d["local"])) if "local" in d else None
    return ObjectFeatures(_box_from(d["box"]), vectors, Palette.from_json(d["palette"]),
                          OcrText.from_json(d["ocr"]), Tags.from_json(d["tags"]), d["coverage"], local)
