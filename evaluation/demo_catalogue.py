"""The demo shop: the grocery data set's 81 catalogue pictures as a catalogue CSV with a category,
a brand and a price for each product, so that the shopper page's filters have something to show.

Derived from the data set's manifest (class names and coarse classes), never copied into the
project: categories group the coarse classes into shop departments, brands are the packaged
products' first word (``Arla-Standard-Milk`` -> ``Arla``; loose fruit and vegetables have none), and
prices are **made up** (a department's price band, placed within it by the name), for the demo only.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from core.errors import InvalidInputError

DEPARTMENTS = {
    "Juice": "Juice",
    "Milk": "Dairy", "Sour-Milk": "Dairy", "Sour-Cream": "Dairy", "Yoghurt": "Dairy",
    "Oat-Milk": "Plant-based", "Oatghurt": "Plant-based", "Soy-Milk": "Plant-based", "Soyghurt": "Plant-based",
    "Asparagus": "Vegetables", "Aubergine": "Vegetables", "Cabbage": "Vegetables", "Carrots": "Vegetables",
    "Cucumber": "Vegetables", "Garlic": "Vegetables", "Ginger": "Vegetables", "Leek": "Vegetables",
    "Mushroom": "Vegetables", "Onion": "Vegetables", "Pepper": "Vegetables", "Potato": "Vegetables",
    "Red-Beet": "Vegetables", "Tomato": "Vegetables", "Zucchini": "Vegetables",
}
"""Coarse class -> department; every other coarse class of the set is fruit."""
PRICE_BANDS = {"Fruit": (0.39, 2.99), "Vegetables": (0.49, 2.49), "Juice": (1.49, 3.49), "Dairy": (0.99, 2.79),
               "Plant-based": (1.69, 3.29)}
"""Made-up demo prices: each department's band."""
TWO_WORD_BRANDS = ("God-Morgon",)


def department(coarse_class: str) -> str:
    return DEPARTMENTS.get(coarse_class, "Fruit")


def brand(class_name: str, packaged: bool) -> str:
    """A packaged product's brand: the first word of its name (two for the brands named so)."""
    if not packaged:
        return ""
    for two in TWO_WORD_BRANDS:
        if class_name.startswith(two + "-"):
            return two.replace("-", " ")
    return class_name.split("-", 1)[0]


def demo_price(class_name: str, dept: str) -> float:
    """A made-up price in the department's band, the same on every run."""
    low, high = PRICE_BANDS[dept]
    where = int(hashlib.sha256(class_name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(low + where * (high - low), 2)


def write_demo_csv(dataset: Path, out: Path) -> int:
    """Write the demo shop's catalogue CSV (absolute image paths into ``dataset``); returns its rows."""
    manifest = Path(dataset) / "manifest.csv"
    if not manifest.is_file():
        raise InvalidInputError(f"no manifest.csv in {dataset}: expected the grocery data set folder")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split") == "catalog"]
    if not rows:
        raise InvalidInputError(f"{manifest} has no catalog rows: expected the grocery data set's manifest")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with open(part, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "image", "title", "brand", "category", "tags", "price", "description"])
        for r in rows:
            image = (Path(dataset) / r["path"]).resolve()
            text = image.with_suffix(".txt")
            description = text.read_text(encoding="utf-8").strip() if text.is_file() else ""
            dept = department(r["coarse_class"])
            packaged = r["packaged"] == "True"
            tags = ";".join([r["coarse_class"].replace("-", " ").lower(), "packaged" if packaged else "loose"])
            writer.writerow([r["class_name"], str(image), r["class_name"].replace("-", " "),
                             brand(r["class_name"], packaged), dept, tags, f"{demo_price(r['class_name'], dept):.2f}",
                             description])
    part.replace(out)
    return len(rows)
