"""Reading a merchant's catalogue: flat folders, folders of sub-folders, CSV manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from core.catalog import Product
from core.errors import InvalidInputError, NotFoundError
from pipeline.catalog_source import CatalogEntry, read_catalog


def _image(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), colour).save(path)
    return path


def _entries(source) -> dict:
    return {e.product.sku: e for e in source.entries}


def _reasons(source) -> dict[str, str]:
    return {s.item: s.reason for s in source.skipped}


# -- flat folder -----------------------------------------------------------------------------------------------------

def test_flat_folder_reads_text_and_json_beside_each_image(tmp_path: Path) -> None:
    _image(tmp_path / "mug-01.jpg")
    (tmp_path / "mug-01.txt").write_text("Red mug\nA sturdy ceramic mug.\nDishwasher safe.\n", encoding="utf-8")
    (tmp_path / "mug-01.json").write_text(json.dumps({
        "brand": "Acme", "category": "kitchen", "tags": ["mug", "red"], "price": 9.5, "material": "stoneware"}))
    source = read_catalog(tmp_path)
    assert source.skipped == []
    entry = _entries(source)["mug-01"]
    assert entry.images == (tmp_path / "mug-01.jpg",)
    p = entry.product
    assert (p.title, p.brand, p.category, p.tags, p.price) == ("Red mug", "Acme", "kitchen", ("mug", "red"), 9.5)
    assert p.description == "A sturdy ceramic mug.\nDishwasher safe."
    assert p.extra == {"material": "stoneware"}


def test_lone_sentence_is_a_description_and_the_title_falls_back_to_the_sku(tmp_path: Path) -> None:
    _image(tmp_path / "oat-drink_1l.png")
    sentence = "A creamy oat drink made from Swedish oats, perfect for coffee and cereal."
    (tmp_path / "oat-drink_1l.txt").write_text(sentence + "\n")
    product = _entries(read_catalog(tmp_path))["oat-drink_1l"].product
    assert product.description == sentence
    assert product.title == "oat drink 1l"


def test_text_without_image_and_bad_json_are_skipped_and_the_rest_read(tmp_path: Path) -> None:
    _image(tmp_path / "good.jpg")
    _image(tmp_path / "broken.jpg")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "orphan.txt").write_text("Orphan title\n")
    source = read_catalog(tmp_path)
    assert set(_entries(source)) == {"good"}
    reasons = _reasons(source)
    assert "broken.json" in reasons["broken"] and "JSON" in reasons["broken"]
    assert "orphan.txt" in reasons["orphan"]


def test_mixed_case_extensions_are_found(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.png", "c.webp", "d.Jpeg"):
        _image(tmp_path / name)
    (tmp_path / "notes.md").write_text("not a product")
    assert set(_entries(read_catalog(tmp_path))) == {"a", "b", "c", "d"}


# -- folder of sub-folders -------------------------------------------------------------------------------------------

def test_subfolders_give_one_entry_with_several_images(tmp_path: Path) -> None:
    for name in ("front.jpg", "back.PNG", "side.webp"):
        _image(tmp_path / "kettle-9" / name)
    (tmp_path / "kettle-9" / "product.json").write_text(json.dumps({"title": "Steel kettle", "price": "24"}))
    _image(tmp_path / "plain" / "1.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    source = read_catalog(tmp_path)
    entries = _entries(source)
    assert set(entries) == {"kettle-9", "plain"}
    kettle = entries["kettle-9"]
    assert sorted(p.name for p in kettle.images) == ["back.PNG", "front.jpg", "side.webp"]
    assert (kettle.product.title, kettle.product.price) == ("Steel kettle", 24.0)
    assert entries["plain"].product.title == "plain"
    assert _reasons(source) == {"empty": "no image"}


def test_text_beside_a_subfolder_is_read_and_a_clashing_flat_image_is_reported(tmp_path: Path) -> None:
    _image(tmp_path / "lamp" / "1.jpg")
    (tmp_path / "lamp.txt").write_text("Desk lamp\nWarm light\n")
    (tmp_path / "lamp.json").write_text(json.dumps({"brand": "Lux"}))
    _image(tmp_path / "vase.jpg")
    _image(tmp_path / "vase" / "2.jpg")
    source = read_catalog(tmp_path)
    entries = _entries(source)
    assert [e.product.sku for e in source.entries].count("vase") == 1
    assert entries["vase"].images == (tmp_path / "vase.jpg",)
    assert (entries["lamp"].product.title, entries["lamp"].product.brand) == ("Desk lamp", "Lux")
    assert "vase/" in _reasons(source)["vase"]


# -- CSV manifest ----------------------------------------------------------------------------------------------------

def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def test_csv_rows_become_products_with_several_images(tmp_path: Path) -> None:
    _image(tmp_path / "shop" / "img" / "mug-a.jpg")
    _image(tmp_path / "shop" / "img" / "mug-b.jpg")
    absolute = _image(tmp_path / "elsewhere" / "cup.png")
    manifest = _csv(tmp_path / "shop" / "catalogue.csv", f"""
sku,image,title,brand,tags,price,colour_name
mug-1,img/mug-a.jpg,Red mug,Acme,kitchen;mug|red,9.5,red
mug-1,img/mug-b.jpg,,,,,
cup-2,{absolute},Blue cup,,,,
""")
    source = read_catalog(manifest)
    assert source.skipped == []
    entries = _entries(source)
    mug = entries["mug-1"]
    assert mug.images == (tmp_path / "shop" / "img" / "mug-a.jpg", tmp_path / "shop" / "img" / "mug-b.jpg")
    assert all(p.is_file() for p in mug.images)
    assert (mug.product.title, mug.product.brand, mug.product.price) == ("Red mug", "Acme", 9.5)
    assert mug.product.tags == ("kitchen", "mug", "red")
    assert mug.product.extra == {"colour_name": "red"}
    assert entries["cup-2"].images == (absolute,)


def test_csv_rows_without_sku_or_image_and_bad_prices_are_skipped(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    manifest = _csv(tmp_path / "cat.csv", """
sku,image,price
good,a.jpg,3
,a.jpg,4
good,,
pricey,a.jpg,abc
""")
    source = read_catalog(manifest)
    assert set(_entries(source)) == {"good"}
    assert len(_entries(source)["good"].images) == 1
    reasons = _reasons(source)
    assert reasons["cat.csv line 3"] == "no sku"
    assert reasons["cat.csv line 4 (good)"] == "no image"
    assert "price" in reasons["pricey"] and "'abc'" in reasons["pricey"]


def test_csv_without_an_image_column_is_rejected(tmp_path: Path) -> None:
    manifest = _csv(tmp_path / "cat.csv", "sku,picture\na,a.jpg\n")
    with pytest.raises(InvalidInputError, match="'image'"):
        read_catalog(manifest)


# -- what read_catalog refuses ---------------------------------------------------------------------------------------

def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_catalog(tmp_path / "nope")


def test_a_file_that_is_not_csv_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"\.csv"):
        read_catalog(_image(tmp_path / "photo.jpg"))


def test_an_empty_folder_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("nothing here")
    with pytest.raises(InvalidInputError, match="no product images"):
        read_catalog(tmp_path)


# -- source_hash -----------------------------------------------------------------------------------------------------

def test_source_hash_follows_metadata_and_image_hashes_not_their_order() -> None:
    product = Product("mug-1", "Red mug", tags=("mug",), price=9.5)
    entry = CatalogEntry(product, (Path("a.jpg"), Path("b.jpg")))
    base = entry.source_hash(["h1", "h2"])
    assert base == entry.source_hash(["h2", "h1"])
    assert base == CatalogEntry(product, (Path("b.jpg"), Path("a.jpg"))).source_hash(["h2", "h1"])
    assert base != entry.source_hash(["h1", "h3"])
    assert base != entry.source_hash(["h1"])
    for changed in (Product("mug-1", "Red mug!", tags=("mug",), price=9.5),
                    Product("mug-1", "Red mug", tags=("mug",), price=9.0),
                    Product("mug-1", "Red mug", tags=("mug",), price=9.5, extra={"size": "L"})):
        assert CatalogEntry(changed, entry.images).source_hash(["h1", "h2"]) != base
