"""The embedder's speed and quality per runtime (``skulens embedder bench``): torch, onnxruntime
float and static int8, and for comparison onnxruntime's dynamic int8 quantisation (not a runtime
here), on the same photos.

Batch-1 latency (one photo at a time, letterboxing included), batched throughput, and the
embedding-only R@1 of whole query photos against the catalogue pictures (the G1 protocol without
detection, colour, tags or text), so each runtime's change in quality shows on its own.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np

from core.settings import Settings
from evaluation.protocols import load_protocol
from pipeline.build import embedder_input_size, make_embedder
from pipeline.images import decode_image, read_image_bytes

RUNTIMES = ("torch", "onnx", "onnx-int8")
DYNAMIC = "onnx-int8-dynamic"  # measured for comparison only: slower than float here, and worse
COMPARED = RUNTIMES + (DYNAMIC,)
WARM_UP_S = 3.0  # one onnxruntime session here took 17.8 ms over its first 200 calls, 11.1 ms after: time steady calls


def _load(paths: list[Path], settings: Settings) -> list[np.ndarray]:
    return [decode_image(read_image_bytes(p, settings.images), settings.images, p.name) for p in paths]


def bench_embedder(settings: Settings, trained, dataset: Path, split: str = "val", runtimes=COMPARED,
                   latency_images: int = 200, batch: int = 32, batch_images: int = 256,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:
    """One row per runtime: batch-1 ms (p50, p95), images/s at ``batch``, R@1 and its change from torch."""
    data = load_protocol("G1", dataset, split)
    gallery = _load([paths[0] for _, paths in data.gallery], settings)
    gallery_labels = np.asarray([data.labels[p.sku] for p, _ in data.gallery])
    queries = _load([q.path for q in data.queries], settings)
    query_labels = np.asarray([q.label for q in data.queries])
    rows = []
    for runtime in runtimes:
        with ExitStack() as stack:
            emb = _embedder(settings, trained, runtime, batch, stack)
            row = _measure(emb, queries, latency_images, batch_images, runtime, progress)
            g, _ = emb.embed(gallery)
            q, _ = emb.embed(queries)
        r1 = float(np.mean(gallery_labels[np.argmax(q @ g.T, axis=1)] == query_labels))
        rows.append({"runtime": runtime, "embedder": emb.name, **row, "batch": batch, "r1": r1,
                     "input_size": emb.input_size})
        if progress:
            progress(f"{runtime}: quality", 1, 1)
    base = next((r["r1"] for r in rows if r["runtime"] == "torch"), None)
    for r in rows:
        r["r1_change"] = None if base is None else r["r1"] - base
    return {"rows": rows, "split": split, "queries": len(queries), "gallery": len(gallery),
            "latency_calls": latency_images,
            "threads": settings.embedder.threads}


def _embedder(settings: Settings, trained, runtime: str, batch: int, stack: ExitStack):
    """The embedder for one row; for the dynamic int8 row, quantised from the float export into a
    temporary folder that ``stack`` removes."""
    from features.embed_efficientnet import EfficientNetLite2Embedder, onnx_file
    from features.embed_onnx import quantize_dynamic_int8

    cfg = settings.model_copy(update={"embedder": settings.embedder.model_copy(
        update={"runtime": "onnx" if runtime == DYNAMIC else runtime, "batch_size": batch})})
    if runtime != DYNAMIC:
        return make_embedder(cfg, trained)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skulens-dynamic-")))
    size = embedder_input_size(cfg, trained)
    path = quantize_dynamic_int8(onnx_file(trained, cfg.models, size=size), folder / "dynamic-int8.onnx")
    return EfficientNetLite2Embedder(cfg.embedder.model_copy(update={"input_size": size}), cfg.models, trained,
                                     variant=("int8-dynamic", path))


def _measure(emb, queries: list[np.ndarray], latency_images: int, batch_images: int, runtime: str,
             progress) -> dict:
    """Batch-1 p50/p95 ms after a warm-up, and images per second in one batched call."""
    emb.embed(queries[:1])  # load
    t_warm, i = time.perf_counter(), 0
    while time.perf_counter() - t_warm < WARM_UP_S:  # warm up: a session's first calls are slower
        emb.embed([queries[i % len(queries)]])
        i += 1
    times = []
    for i in range(latency_images):
        t0 = time.perf_counter()
        emb.embed([queries[i % len(queries)]])
        times.append((time.perf_counter() - t0) * 1000)
        if progress:
            progress(f"{runtime}: batch 1", i + 1, latency_images)
    many = [queries[i % len(queries)] for i in range(batch_images)]
    t0 = time.perf_counter()
    emb.embed(many)
    per_s = batch_images / (time.perf_counter() - t0)
    return {"batch1_p50_ms": float(np.percentile(times, 50)), "batch1_p95_ms": float(np.percentile(times, 95)),
            "images_per_s": per_s}


def embed_bench_markdown(result: dict) -> str:
    rows = result["rows"]
    sizes = sorted({r.get("input_size", 260) for r in rows}) or [260]
    text = (f"EfficientNet-Lite2 at {'/'.join(map(str, sizes))} px. Batch 1: one photo per call, letterboxing included, after "
            f"{WARM_UP_S:.0f} s of warm-up calls, p50/p95 over {result.get('latency_calls', '-')} calls; batched: "
            f"{rows[0]['batch'] if rows else '-'} photos per call. R@1: "
            f"G1 split **{result['split']}**, {result['queries']} whole query photos against the "
            f"{result['gallery']} catalogue pictures, embedding cosine only (no detection, colour, tags or text).\n\n"
            "| runtime | embedder | batch 1 p50 ms | batch 1 p95 ms | batched images/s | R@1 | change vs torch |\n"
            "|---|---|---|---|---|---|---|\n")
    for r in rows:
        change = "–" if r["r1_change"] is None else f"{r['r1_change']:+.3f}"
        text += (f"| {r['runtime']} | {r['embedder']} | {r['batch1_p50_ms']:.1f} | {r['batch1_p95_ms']:.1f} | "
                 f"{r['images_per_s']:.1f} | {r['r1']:.3f} | {change} |\n")
    if any(r["runtime"] == DYNAMIC for r in rows):
        text += (f"\n{DYNAMIC}: onnxruntime's dynamic quantisation of the float export (int8 weights, "
                 "activations quantised on every call), measured for comparison; it is not a runtime "
                 "skulens offers. onnx-int8 is static quantisation: activation ranges calibrated on up to 64 "
                 "catalogue images.\n")
    return text
