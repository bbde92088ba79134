"""``skulens bench-scale``: the engine on large catalogues assembled from real embeddings."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import SkulensError
from service.cli import common
from service.cli.common import err, progress_bar

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def _images(folder: Path, limit: int) -> list[Path]:
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise SkulensError(f"no images under {folder}")
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def bench_scale(
    vector_data: Annotated[list[Path], typer.Option(help="image folders whose real embeddings are grown to each size "
                                                         "(e.g. ../shared/datasets)")],
    templates: Annotated[Path, typer.Option(help="real images whose analyses the catalogue images copy "
                                                 "(e.g. the grocery catalogue and train photos)")],
    queries: Annotated[Path, typer.Option(help="real shopper photos to search with, kept out of the vectors")],
    sizes: Annotated[str, typer.Option(help="catalogue sizes in images, comma-separated")] = "1000,10000,100000",
    n_templates: Annotated[int, typer.Option(min=1, help="how many template images to analyse")] = 40,
    n_queries: Annotated[int, typer.Option(min=1, help="how many photos to search with")] = 30,
    fashion_mnist: Annotated[bool, typer.Option(help="add Fashion-MNIST's 60,000 photos to the real vectors "
                                                     "(Debian's dataset-fashion-mnist)")] = False,
    nprobes: Annotated[str, typer.Option(help="with --protocol-dataset: IVF lists probed to rank its queries with as "
                                              "well, comma-separated (beside the settings' index.nprobe)")] = "16,256",
    protocol_dataset: Annotated[Optional[Path], typer.Option(
        help="the grocery data set: its G1 gallery goes into each catalogue and its val photos are ranked with "
             "the catalogue's index and with exact search")] = None,
    reuse: Annotated[bool, typer.Option(help="keep a catalogue an earlier run assembled at the same size (its "
                                               "analysis and writing are skipped; everything else is measured "
                                               "again)")] = False,
    benchmarks: Annotated[Path, typer.Option(help="the BENCHMARKS.md to update")] = Path("BENCHMARKS.md"),
) -> None:
    """Scale: start-up, memory, disk, write and search cost of catalogues of 1k-1M images (under <data>/bench-scale/)."""
    from evaluation.bench_scale import bench_size, scale_markdown
    from evaluation.benchmarks_md import update_section
    from evaluation.real_vectors import Grown, real_sets
    from pipeline.build import build_stages
    from pipeline.database import FeatureCache

    counts = [int(x) for x in sizes.split(",") if x.strip()]
    if not counts or min(counts) < 10:
        raise SkulensError(f"expected sizes of at least 10 images, got {sizes!r}")
    settings = common.settings()
    stages = build_stages(settings)
    stages.warmup()
    bar, update = progress_bar()
    with bar:
        cache = FeatureCache(settings.data / "eval" / "vectors.sqlite3")
        real, _ = real_sets(vector_data, [queries], stages.embedder, cache, fashion_mnist, update)
    protocol = None
    if protocol_dataset is not None:
        from evaluation.protocols import load_protocol

        protocol = load_protocol("G1", protocol_dataset, "val")
    rows = []
    shared = FeatureCache(settings.data / "eval" / "features.sqlite3")  # query and gallery analyses, all sizes
    for n in counts:
        size_settings = settings.model_copy(update={"data": settings.data / "bench-scale" / str(n)})
        rows.append(bench_size(size_settings, stages, n, partial(Grown, real, n * 4, seed=n),  # <= 4 regions
                               _images(templates, n_templates), _images(queries, n_queries),
                               lambda msg: err.print(msg, highlight=False), protocol, shared,
                               [int(x) for x in nprobes.split(",") if x.strip()], reuse))
        err.print(f"{n:,} images: {rows[-1]}", highlight=False)
    note = (f"Catalogues assembled from {len(real):,} real whole-image embeddings ({stages.embedder.name}) of the "
            f"images under {', '.join(f'`{f}`' for f in vector_data)}"
            + (" and Fashion-MNIST" if fashion_mnist else "")
            + ", grown between real neighbours to each size (evaluation/real_vectors.py); each catalogue image "
            f"copies the analysis of one of {n_templates} real images under `{templates}` (three images a "
            f"product). Searches: the ranking part for {n_queries} photos under `{queries}` (their analysis, "
            "about half a second on this CPU, does not depend on the catalogue). Memory: what the open catalogue "
            "adds to the process, models already loaded. Vector search: the index alone, each photo's query vectors "
            "for the candidates a search asks for (exact re-ranking included)."
            + (f" {protocol.name}: the grocery catalogue's {len(protocol.gallery)} real products are in every "
               f"catalogue, and its {len(protocol.queries)} {protocol.split} photos are ranked with the catalogue's "
               "index and again with exact search (a flat index over the same stored vectors)."
               if protocol else "")
            + " How it is done: evaluation/bench_scale.py.\n\n")
    update_section(benchmarks, "scale", "Scale: one machine, catalogues of real embeddings", note + scale_markdown(rows))
    err.print(f"updated {benchmarks}")
