"""The `skulens` command as a user runs it: exit codes, one-line errors, JSON shape, kill safety."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CATALOGUE, DATASETS, jpeg_bytes, make_catalogue, models_missing, product_image

pytestmark = [pytest.mark.model, pytest.mark.slow]


def skulens(*args: str, data: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"skulens {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    if reason := models_missing():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cli")
    folder = make_catalogue(root / "catalog")
    (folder / "BROKEN.jpg").write_bytes(b"not a jpeg at all")
    (folder / "ORPHAN.txt").write_text("a description without an image")
    proc = skulens("index", str(folder), data=root / "data")
    return root, proc


def test_index_skips_bad_items_reports_them_and_indexes_the_rest(indexed):
    root, proc = indexed
    assert "indexed 4" in proc.stderr
    assert "BROKEN" in proc.stderr and "not an image" in proc.stderr
    assert "ORPHAN" in proc.stderr
    # no terminal here: progress comes as plain lines with the count and rate
    assert re.search(r"^indexing products: \d+/\d+, [\d.]+/s", proc.stderr, re.MULTILINE), proc.stderr
    listed = json.loads(skulens("products", "list", "--json", data=root / "data").stdout)
    assert sorted(p["sku"] for p in listed) == sorted(CATALOGUE)


def test_search_json_has_query_analysis_and_all_signals(indexed, tmp_path):
    root, _ = indexed
    photo = tmp_path / "q.jpg"
    photo.write_bytes(jpeg_bytes(product_image(*CATALOGUE["RED-APPLE"], size=360), quality=75))
    doc = json.loads(skulens("search", str(photo), "--json", "--k", "3", data=root / "data").stdout)
    assert set(doc) == {"query", "results", "weights", "notes", "close"}
    assert doc["close"] is True and doc["notes"] == [] and doc["weights"]["embedding"] > 0
    q = doc["query"]
    assert {"boxes", "palette", "ocr", "tags", "timings_ms"} <= set(q)
    assert {"detect", "colour", "ocr", "embed", "rank"} <= set(q["timings_ms"])
    assert doc["results"][0]["sku"] == "RED-APPLE"
    for r in doc["results"]:
        assert set(r["signals"]) == {"embedding", "colour", "tags", "text", "verify", "semantic"}
        assert Path(r["image"]).is_file()


def test_search_all_objects_gives_a_list_of_groups(indexed, tmp_path):
    root, _ = indexed
    photo = tmp_path / "q.jpg"
    photo.write_bytes(jpeg_bytes(product_image(*CATALOGUE["LIME"])))
    doc = json.loads(skulens("search", str(photo), "--json", "--all-objects", data=root / "data").stdout)
    assert isinstance(doc, list) and doc and all({"query", "results", "weights", "notes", "close"} == set(g) for g in doc)


def test_table_output_and_weights(indexed, tmp_path):
    root, _ = indexed
    photo = tmp_path / "q.jpg"
    photo.write_bytes(jpeg_bytes(product_image(*CATALOGUE["ARLA-MILK"])))
    proc = skulens("search", str(photo), "--weights", "embedding=1,colour=0,tags=0,text=0", data=root / "data")
    assert "ARLA-MILK" in proc.stdout and "timings" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("products", "show", "NOPE"), "no product with SKU 'NOPE'"),
    (("products", "remove", "NOPE"), "no product with SKU 'NOPE'"),
    (("search", "/no/such/photo.jpg"), "no such file"),
    (("search", "--text", "x", "--weights", "sparkle=1"), "unknown signal 'sparkle'"),
    (("index", "/no/such/folder"), "no such catalogue"),
    (("tune", "/no/such/grocery", "--protocol", "C1"), "G1 or G2"),
    (("tune", "/no/such/grocery", "--split", "val"), "a split we report"),
])
def test_errors_are_one_line_and_exit_1(indexed, args, message):
    root, _ = indexed
    before = skulens("products", "list", "--json", data=root / "data").stdout
    proc = skulens(*args, data=root / "data", check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert skulens("products", "list", "--json", data=root / "data").stdout == before


def test_a_command_line_that_does_not_parse_exits_2_and_says_what_is_wrong(indexed):
    root, _ = indexed
    proc = skulens("search", "--text", "lime", "--k", "0", data=root / "data", check=False)
    assert proc.returncode == 2 and "--k" in proc.stderr and "Traceback" not in proc.stderr  # as docs/cli.md says


@pytest.mark.parametrize("content", [b"", b"GIF89a broken", b"\xff\xd8\xff\xe0" + b"\0" * 50])
def test_bad_query_files_are_one_line_errors(indexed, tmp_path, content):
    root, _ = indexed
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    proc = skulens("search", str(bad), data=root / "data", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_add_and_remove_change_results_at_once(indexed, tmp_path):
    root, _ = indexed
    data = tmp_path / "data"
    import shutil

    shutil.copytree(root / "data", data)
    img = tmp_path / "new.jpg"
    img.write_bytes(jpeg_bytes(product_image((250, 200, 0), "BANANA", "ellipse")))
    skulens("products", "add", "BANANA", str(img), "--title", "Banana", "--tags", "fruit;yellow", data=data)
    doc = json.loads(skulens("search", str(img), "--json", "--k", "1", data=data).stdout)
    assert doc["results"][0]["sku"] == "BANANA"
    shown = json.loads(skulens("products", "show", "BANANA", data=data).stdout)
    assert shown["tags"] == ["fruit", "yellow"] and len(shown["images"]) == 1
    skulens("products", "remove", "BANANA", data=data)
    doc = json.loads(skulens("search", str(img), "--json", "--k", "5", data=data).stdout)
    assert "BANANA" not in [r["sku"] for r in doc["results"]]


def test_killing_index_leaves_a_consistent_catalogue(tmp_path):
    if reason := models_missing():
        pytest.skip(reason)
    folder = make_catalogue(tmp_path / "catalog")
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--data", str(data), "index", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = data / "catalog.sqlite3"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the first committed product
        if db.exists() and _products(db) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    count = _products(db)
    assert 1 <= count <= len(CATALOGUE)
    listed = json.loads(skulens("products", "list", "--json", data=data).stdout)
    assert len(listed) == count and all(p["images"] == 1 for p in listed)
    photo = tmp_path / "q.jpg"
    photo.write_bytes(jpeg_bytes(product_image(*CATALOGUE["ARLA-MILK"])))
    skulens("search", str(photo), "--json", data=data)  # the index is rebuilt or loaded, searches work
    skulens("index", str(folder), data=data)
    assert len(json.loads(skulens("products", "list", "--json", data=data).stdout)) == len(CATALOGUE)


def _products(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_serve_refuses_other_hosts_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKULENS_API_")}
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--data", str(tmp_path / "d"), "--host",
                           "0.0.0.0", "--port", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in proc.stderr and "Traceback" not in proc.stderr


def test_dedup_over_the_catalogue_a_photo_and_a_folder(indexed, tmp_path):
    root, _ = indexed
    data = root / "data"
    colour, word, shape = CATALOGUE["OATLY-OAT"]
    copy = tmp_path / "oatly-again.jpg"
    copy.write_bytes(jpeg_bytes(product_image(colour, word, shape, size=250), 50))
    report = json.loads(skulens("dedup", "--json", "-", data=data).stdout)
    assert report == {"groups": [], "skipped": []}  # four different products
    proc = skulens("dedup", "--image", str(copy), "--json", str(tmp_path / "photo.json"), data=data)
    assert "OATLY-OAT" in proc.stdout
    photo = json.loads((tmp_path / "photo.json").read_text())
    assert photo["groups"][0]["skus"] == ["OATLY-OAT"]
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(copy.read_bytes())
    enlarged = Image.fromarray(product_image(colour, word, shape, size=250)).resize((320, 320), Image.Resampling.BICUBIC)
    (folder / "b.jpg").write_bytes(jpeg_bytes(np.asarray(enlarged), 90))  # the same picture, enlarged and re-saved
    (folder / "c.jpg").write_bytes(b"broken")
    proc = skulens("dedup", "--folder", str(folder), "--html", str(tmp_path / "r.html"), data=data)
    assert "1 group(s); 1 skipped" in proc.stdout and "c.jpg" in proc.stdout
    assert "a.jpg, b.jpg" in proc.stdout  # the group names its files (a folder has no SKUs)
    assert (tmp_path / "r.html").read_text().count("data:image/jpeg;base64,") == 2
    bad = skulens("dedup", "--folder", str(tmp_path / "nowhere"), data=data, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: not a folder")


def test_words_train_suggest_and_forget(indexed):
    root, _ = indexed
    trained = skulens("words", "train", data=root / "data")
    assert re.search(r"word map learnt from 4 pictures of 4 products in [\d.]+ s", trained.stdout), trained.stdout
    suggested = json.loads(skulens("words", "suggest", "LIME", "--json", data=root / "data").stdout)
    assert suggested["sku"] == "LIME" and suggested["source"] == "word map"
    assert "lime" not in [w["word"] for w in suggested["words"]]  # its title holds it already
    missing = skulens("words", "suggest", "NO-SUCH", data=root / "data", check=False)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1 and "NO-SUCH" in missing.stderr
    assert "forgotten" in skulens("words", "forget", data=root / "data").stdout
    again = json.loads(skulens("words", "suggest", "LIME", "--json", data=root / "data").stdout)
    assert again["source"] == "ConSE"


def test_models_list_names_the_product_detector(tmp_path):
    listed = skulens("models", "list", data=tmp_path / "data").stdout
    assert "product detector (shipped" in listed and "AGPL-3.0" in listed
    assert "product detector (ONNX form" in listed  # the export `models fetch` makes of it


@pytest.mark.dataset
def test_the_demo_shop_has_categories_brands_and_prices(tmp_path):
    dataset = DATASETS / "grocery"
    if not (dataset / "manifest.csv").is_file():
        pytest.skip(f"{dataset} is not there")
    out = tmp_path / "demo.csv"
    proc = skulens("demo-csv", str(dataset), str(out), data=tmp_path / "data")
    assert "81 products" in proc.stdout
    with open(out, newline="") as fh:
        rows = {r["sku"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 81 and all(Path(r["image"]).is_file() for r in rows.values())
    assert rows["Arla-Standard-Milk"]["brand"] == "Arla" and rows["Arla-Standard-Milk"]["category"] == "Dairy"
    assert rows["God-Morgon-Apple-Juice"]["brand"] == "God Morgon"
    assert rows["Granny-Smith"]["brand"] == "" and rows["Granny-Smith"]["category"] == "Fruit"
    assert rows["Zucchini"]["category"] == "Vegetables" and rows["Oatly-Oat-Milk"]["category"] == "Plant-based"
    assert all(0 < float(r["price"]) < 5 for r in rows.values())
    assert {r["category"] for r in rows.values()} == {"Fruit", "Vegetables", "Juice", "Dairy", "Plant-based"}
    assert not str(out).startswith(str(Path(__file__).parents[2]))  # written where asked, not into the project
