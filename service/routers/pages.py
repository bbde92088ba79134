"""The two web pages: the shopper's search at / and the merchant's catalogue at /merchant."""

from __future__ import annotations

import pathlib

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def shopper_page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/merchant")
def merchant_page():
    return FileResponse(STATIC / "merchant.html", media_type="text/html")


@router.get("/favicon.ico")
def favicon():
    """Browsers ask for it on every page: the pages' icon (an SVG; the pages link it too)."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})
