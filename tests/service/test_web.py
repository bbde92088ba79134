"""The web pages in a real browser (Debian's chromium, headless, driven by Playwright):
a shopper uploads a photo and sees results; a merchant adds, finds, edits and deletes products.

Screenshots of the pages go to ``build/screenshots`` (or ``$SKULENS_SCREENSHOTS``): look at them."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from core.settings import Settings
from pipeline.engine import Engine
from service.app import create_app
from tests.conftest import CATALOGUE, jpeg_bytes, make_catalogue, product_image

pytestmark = [pytest.mark.model, pytest.mark.slow]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(real_stages, tmp_path_factory):
    """`skulens serve` in this process (sharing the loaded models) on a catalogue of four products."""
    import uvicorn

    from pipeline.catalog_source import read_catalog
    from pipeline.indexing import index_catalog

    root = tmp_path_factory.mktemp("web")
    settings = Settings(data=root / "data")
    engine = Engine(settings, real_stages)
    index_catalog(engine, read_catalog(make_catalogue(root / "catalog")))
    engine.close()
    port = _free_port()
    app = create_app(settings, lambda s: Engine(s, real_stages))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", root
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (`make system` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


SHOTS = Path(os.environ.get("SKULENS_SCREENSHOTS", "build/screenshots"))


def shot(page, name: str) -> None:
    """A full-page screenshot into SHOTS, to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def desktop(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    yield pg
    context.close()


def test_shopper_uploads_a_photo_and_sees_explained_results(server, page, tmp_path):
    url, _ = server
    colour, word, shape = CATALOGUE["OATLY-OAT"]
    photo = tmp_path / "shelf.jpg"
    photo.write_bytes(jpeg_bytes(product_image(colour, word, shape, size=360)))
    page.goto(url + "/")
    assert page.locator("#photo").get_attribute("capture") is not None
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector(".card", timeout=120_000)
    first = page.locator(".card").first
    assert first.get_attribute("data-sku") == "OATLY-OAT"
    assert first.locator(".signals dt").all_inner_texts() == ["embedding", "colour", "tags", "text", "verify"]
    assert first.locator(".bar").count() == 5
    assert page.locator("#boxes .box").count() >= 1
    page.wait_for_function("document.querySelector('.card img').naturalWidth > 0", timeout=30_000)
    with page.expect_response(lambda r: r.url.endswith("/v1/search")) as searched:
        page.locator("#boxes .box").first.click()  # tapping a box searches that object alone
    assert searched.value.status == 200
    page.wait_for_function("document.getElementById('status').textContent.includes('closest product')")
    assert page.locator(".card").first.get_attribute("data-sku") == "OATLY-OAT"


def test_shopper_types_a_query(server, page):
    url, _ = server
    page.goto(url + "/")
    page.fill("#text", "lime")
    page.click("#text-form button")
    page.wait_for_selector(".card")
    assert page.locator(".card").first.get_attribute("data-sku") == "LIME"
    # typed words alone: the text signal and the pictures' place in word space, and only those
    assert page.locator(".card").first.locator(".signals dt").all_inner_texts() == ["text", "semantic"]
    assert page.inner_text("#weights") == "Score = 0.10 × text + 0.10 × semantic"
    shot(page, "shopper-words-phone")


def test_merchant_edit_suggests_tags_from_the_pictures(server, desktop):
    url, _ = server
    page = desktop
    page.goto(url + "/merchant")
    page.wait_for_selector("#products li[data-sku='LIME']")
    page.locator("#products li[data-sku='LIME'] .edit").click()
    page.wait_for_selector("#edit[open]")
    page.wait_for_selector("#edit-suggest .chip")
    chips = page.locator("#edit-suggest .chip").all_inner_texts()
    assert chips[0] == "+ green", chips  # its colour first, then the catalogue's words near its picture, if any
    shot(page, "merchant-suggest-desktop")
    page.locator("#edit-suggest .chip").first.click()
    assert page.input_value("#edit-form input[name=tags]") == "green"
    assert page.locator("#edit-suggest .chip").count() == len(chips) - 1
    page.click("#edit-cancel")  # nothing saved
    assert page.request.get(url + "/v1/products/LIME").json()["tags"] == []


def test_merchant_adds_and_deletes_a_product(server, page, tmp_path):
    url, _ = server
    image = tmp_path / "cup.jpg"
    image.write_bytes(jpeg_bytes(product_image((20, 40, 230), "CUP", "ellipse")))
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/merchant")
    page.wait_for_selector("#products li")
    page.fill("input[name=sku]", "BLUE-CUP")
    page.fill("input[name=title]", "Blue cup")
    page.fill("input[name=tags]", "kitchen, blue")
    page.fill("input[name=price]", "3.5")
    page.set_input_files("input[name=images]", str(image))
    page.click("#add-form button[type=submit]")
    item = page.locator("#products li[data-sku='BLUE-CUP']")
    item.wait_for(timeout=120_000)
    assert "1 image" in item.inner_text()
    page.wait_for_function("document.querySelector(\"li[data-sku='BLUE-CUP'] img\").naturalWidth > 0")
    item.locator(".delete").click()
    item.wait_for(state="detached")
    assert "Deleted BLUE-CUP" in page.inner_text("#status")


def test_merchant_imports_a_catalogue_and_follows_the_job(server, page, tmp_path):
    url, _ = server
    image = tmp_path / "mug.jpg"
    image.write_bytes(jpeg_bytes(product_image((200, 120, 20), "MUG", "box")))
    manifest = tmp_path / "shop.csv"
    manifest.write_text("sku,image,title\nORANGE-MUG,mug.jpg,Orange mug\nNO-PHOTO,absent.jpg,Never uploaded\n")
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/merchant")
    page.set_input_files("input[name=manifest]", str(manifest))
    page.set_input_files("input[name=import-images]", str(image))
    page.click("#import-form button[type=submit]")
    page.wait_for_function("document.querySelector('#import-summary').textContent.startsWith('Imported')",
                           timeout=120_000)
    summary = page.inner_text("#import-summary")
    assert "1 indexed" in summary and "1 skipped" in summary, summary
    assert "NO-PHOTO" in page.inner_text("#import-errors") and "not uploaded" in page.inner_text("#import-errors")
    assert page.evaluate("document.querySelector('#import-progress').value") == 2
    page.locator("#products li[data-sku='ORANGE-MUG']").wait_for(timeout=30_000)  # the list reloads
    page.screenshot(path=str(tmp_path / "import.png"), full_page=True)
    assert page.request.delete(url + "/v1/products/ORANGE-MUG").ok


def test_merchant_finds_duplicate_listings_and_checks_a_photo(server, page, tmp_path):
    import numpy as np
    from PIL import Image

    url, _ = server
    colour, word, shape = CATALOGUE["ARLA-MILK"]
    copy = jpeg_bytes(np.asarray(Image.fromarray(product_image(colour, word, shape)).resize((260, 260))), 60)
    assert page.request.put(url + "/v1/products/ARLA-AGAIN", data={"title": "Arla again"}).ok
    res = page.request.post(url + "/v1/products/ARLA-AGAIN/images",
                            multipart={"file": {"name": "a.jpg", "mimeType": "image/jpeg", "buffer": copy}})
    assert res.ok, res.text()
    try:
        page.goto(url + "/merchant")
        page.click("#dedup-run")
        group = page.locator(".dup-group").first
        group.wait_for(timeout=120_000)
        assert "ARLA-AGAIN" in group.inner_text() and "ARLA-MILK" in group.inner_text()
        assert page.locator(".dup-group").count() == 1
        page.wait_for_function("document.querySelector('.dup-group img').naturalWidth > 0")
        photo = tmp_path / "listing.jpg"
        photo.write_bytes(copy)
        page.set_input_files("#dedup-photo", str(photo))
        page.wait_for_function("document.getElementById('dedup-summary').textContent.startsWith('Already')",
                               timeout=120_000)
        assert "ARLA-MILK" in page.inner_text("#dedup-summary")
    finally:
        assert page.request.delete(url + "/v1/products/ARLA-AGAIN").ok


def test_merchant_add_that_fails_creates_nothing_and_a_taken_sku_is_refused(server, desktop, tmp_path):
    url, _ = server
    page = desktop
    fake = tmp_path / "label.jpg"
    fake.write_text("a text file, renamed")
    good = tmp_path / "jar.jpg"
    good.write_bytes(jpeg_bytes(product_image((20, 160, 60), "JAR", "box")))
    page.goto(url + "/merchant")
    page.wait_for_selector("#products li")
    sku = page.locator("input[name=sku]")
    sku.fill("a/b")
    assert page.evaluate("document.querySelector('input[name=sku]').validity.patternMismatch")  # a valid pattern
    sku.fill("UX-OAT-MILK")
    assert not page.evaluate("document.querySelector('input[name=sku]').validity.patternMismatch")
    page.fill("input[name=title]", "Oat milk 1 l")
    page.set_input_files("input[name=images]", [str(good), str(fake)])
    page.click("#add-form button[type=submit]")
    page.wait_for_selector("#add-status.error", timeout=120_000)
    assert "label.jpg" in page.inner_text("#add-status")
    assert page.request.get(url + "/v1/products/UX-OAT-MILK").status == 404
    page.set_input_files("input[name=images]", str(good))
    page.click("#add-form button[type=submit]")
    page.wait_for_function("document.getElementById('add-status').textContent === 'Added UX-OAT-MILK.'",
                           timeout=120_000)
    try:
        page.fill("input[name=sku]", "UX-OAT-MILK")
        page.fill("input[name=title]", "Something else")
        page.set_input_files("input[name=images]", str(good))
        page.click("#add-form button[type=submit]")
        page.wait_for_selector("#add-status.error button", timeout=120_000)
        assert "already in the catalogue" in page.inner_text("#add-status")
        assert page.request.get(url + "/v1/products/UX-OAT-MILK").json()["title"] == "Oat milk 1 l"
        shot(page, "merchant-taken-sku-desktop")
        page.click("#add-status button")  # "Edit UX-OAT-MILK"
        page.wait_for_selector("#edit[open]")
        assert page.input_value("#edit-form input[name=title]") == "Oat milk 1 l"
        page.wait_for_function("document.querySelector('#edit-images img').naturalWidth > 0")
    finally:
        assert page.request.delete(url + "/v1/products/UX-OAT-MILK").ok


def test_merchant_finds_edits_and_flags_products(server, desktop, tmp_path):
    url, _ = server
    page = desktop
    assert page.request.put(url + "/v1/products/ZZ-BARE", data={"title": "Bare shelf item"}).ok
    image = tmp_path / "shelf.jpg"
    image.write_bytes(jpeg_bytes(product_image((230, 200, 20), "SHELF", "box")))
    try:
        page.goto(url + "/merchant")
        page.wait_for_selector("#products li")
        assert page.inner_text("#page-info") == "Page 1 of 1"
        bare = page.locator("#products li[data-sku='ZZ-BARE']")
        assert bare.locator(".badge").is_visible() and "noimage" in bare.get_attribute("class")
        assert not page.locator("#products li[data-sku='LIME'] .badge").is_visible()
        page.fill("#find", "lim")
        page.wait_for_function("document.querySelectorAll('#products li').length === 1")
        assert page.locator("#products li").first.get_attribute("data-sku") == "LIME"
        page.fill("#find", "no such thing")
        page.wait_for_function("document.getElementById('page-info').textContent === 'No product matches.'")
        page.fill("#find", "")
        page.check("#without-images")
        page.wait_for_function("document.querySelectorAll('#products li').length === 1")
        assert page.locator("#products li").first.get_attribute("data-sku") == "ZZ-BARE"
        page.uncheck("#without-images")
        page.select_option("#sort", "newest")
        page.wait_for_function("document.querySelector('#products li').dataset.sku === 'ZZ-BARE'")
        shot(page, "merchant-desktop")
        page.locator("#products li[data-sku='ZZ-BARE'] .edit").click()
        page.wait_for_selector("#edit[open]")
        assert "No image yet" in page.inner_text("#edit-images")
        page.fill("#edit-form input[name=title]", "Yellow shelf box")
        page.fill("#edit-form input[name=price]", "12.5")
        page.set_input_files("#edit-form input[name=images]", str(image))
        shot(page, "merchant-edit-desktop")
        page.click("#edit-form button[type=submit]")
        page.wait_for_selector("#edit", state="hidden", timeout=120_000)
        saved = page.request.get(url + "/v1/products/ZZ-BARE").json()
        assert saved["title"] == "Yellow shelf box" and saved["price"] == 12.5 and len(saved["images"]) == 1
        item = page.locator("#products li[data-sku='ZZ-BARE']")
        item.wait_for()
        page.wait_for_function("!document.querySelector(\"li[data-sku='ZZ-BARE'] .badge\").checkVisibility()")
        assert "Yellow shelf box" in item.inner_text() and "12.50" in item.inner_text()
    finally:
        assert page.request.delete(url + "/v1/products/ZZ-BARE").ok


def test_merchant_duplicate_check_clears_what_it_showed_before(server, page, tmp_path):
    url, _ = server
    colour, word, shape = CATALOGUE["LIME"]
    listed = tmp_path / "lime.jpg"
    listed.write_bytes(jpeg_bytes(product_image(colour, word, shape)))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a picture")
    page.goto(url + "/merchant")
    page.set_input_files("#dedup-photo", str(listed))
    page.wait_for_function("document.getElementById('dedup-summary').textContent.startsWith('Already')",
                           timeout=120_000)
    page.wait_for_function("document.querySelector('#dedup-photo-preview img').naturalWidth > 0")
    row = page.locator(".dup-pairs tbody tr").first
    assert "LIME" in row.inner_text() and row.locator("img").count() == 2
    page.wait_for_function("[...document.querySelectorAll('.dup-group img')].every((im) => im.naturalWidth > 0)",
                           timeout=30_000)  # each pair's pictures, the catalogue's included
    shot(page, "merchant-duplicates-phone")
    page.set_input_files("#dedup-photo", str(broken))
    page.wait_for_selector("#dedup-summary.error", timeout=60_000)
    assert page.inner_text("#dedup-summary").startswith("broken.jpg: ")
    assert page.locator(".dup-group").count() == 0 and "Already" not in page.inner_text("main")
    assert page.inner_text("#status") == ""  # the error is where the check was made, not at the top


@pytest.fixture
def shop_details(server):
    """Categories, brands and prices on the four products for the test, taken off after it."""
    import httpx

    url, _ = server
    details = {sku: {"category": shape, "brand": word.title(), "price": 1.0 + i}
               for i, (sku, (_, word, shape)) in enumerate(CATALOGUE.items())}
    for sku, body in details.items():
        assert httpx.patch(f"{url}/v1/products/{sku}", json=body).status_code == 200
    yield details
    for sku in details:
        httpx.patch(f"{url}/v1/products/{sku}", json={"category": "", "brand": "", "price": None})


def test_shopper_filters_narrow_the_results_and_say_why_a_list_is_empty(server, shop_details, browser):
    url, _ = server
    for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport, is_mobile=name == "phone", has_touch=name == "phone")
        page = context.new_page()
        page.goto(url + "/")
        page.click("#filters summary")
        page.wait_for_function("document.querySelectorAll('#f-category option').length === 3")
        assert page.locator("#f-category option").all_inner_texts() == ["any", "box (2)", "ellipse (2)"]
        page.fill("#text", "product")
        page.click("#text-form button")
        page.wait_for_function("document.querySelectorAll('.card').length === 4")
        page.select_option("#f-category", "ellipse")
        page.wait_for_function("document.querySelectorAll('.card').length === 2")
        assert {c.get_attribute("data-sku") for c in page.locator(".card").all()} == {"RED-APPLE", "LIME"}
        assert page.inner_text("#filter-count") == "(1 on)"
        assert "Lime" in page.locator(".card[data-sku='LIME'] .facts").inner_text()
        page.fill("#f-price-max", "3.5")  # RED-APPLE costs 3.0, LIME 4.0
        page.locator("#f-price-max").dispatch_event("change")
        page.wait_for_function("document.querySelectorAll('.card').length === 1")
        assert page.locator(".card").first.get_attribute("data-sku") == "RED-APPLE"
        shot(page, f"shopper-filters-{name}")
        page.fill("#f-price-max", "")
        page.select_option("#f-colour", index=1)
        page.select_option("#f-brand", "Oatly")  # an ellipse category holds no Oatly
        page.wait_for_function("document.getElementById('status').textContent.startsWith('No product matches')")
        assert page.locator(".card").count() == 0
        page.click("#f-clear")
        page.wait_for_function("document.querySelectorAll('.card').length === 4")
        context.close()


def test_shopper_sees_why_a_photo_ranked_and_errors_clear_the_old_photo(server, page, tmp_path):
    url, _ = server
    colour, word, shape = CATALOGUE["LIME"]
    photo = tmp_path / "lime.jpg"
    photo.write_bytes(jpeg_bytes(product_image(colour, word, shape, size=360)))
    broken = tmp_path / "broken.jpg"
    broken.write_text("a text file")
    page.goto(url + "/")
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector(".card", timeout=120_000)
    assert page.locator(".card").first.get_attribute("data-sku") == "LIME"
    seen = page.inner_text("#seen")
    assert "Words read" in seen and "LIME" in seen.upper() and "Colours" in seen and "green" in seen
    described = page.locator("#seen dd").last.inner_text()
    assert page.locator("#seen dt").last.inner_text() == "Described as" and described.startswith("green")
    assert page.locator("#seen .swatch").count() >= 1
    scores = page.locator(".card").first.locator(".signals dd small").all_inner_texts()
    assert len(scores) == 5 and all(0 <= float(v) <= 1 for v in scores)
    assert page.inner_text("#weights").startswith("Score = 0.60 × embedding + 0.05 × colour")
    assert page.inner_text("#status").startswith("The ") and "closest" in page.inner_text("#status")
    page.wait_for_function("document.querySelector('.card img').naturalWidth > 0", timeout=30_000)
    shot(page, "shopper-photo-phone")
    page.set_input_files("#photo", str(broken))
    page.wait_for_selector("#status.error", timeout=60_000)
    assert "broken.jpg" in page.inner_text("#status")
    assert page.locator("#preview").is_hidden() and page.locator(".card").count() == 0
    assert page.locator("#seen dt").count() == 0 and page.locator("#boxes .box").count() == 0


def test_a_big_phone_photo_is_shrunk_before_upload(server, page, tmp_path):
    import numpy as np
    from PIL import Image

    url, _ = server
    colour, word, shape = CATALOGUE["RED-APPLE"]
    big = Image.fromarray(product_image(colour, word, shape, size=600)).resize((6000, 6000))
    photo = tmp_path / "phone.jpg"
    big.save(photo, "JPEG", quality=95)
    page.goto(url + "/")
    with page.expect_response(lambda r: r.url.endswith("/v1/search"), timeout=120_000) as answered:
        page.set_input_files("#photo", str(photo))
    # the server shrinks to images.max_side (2048) itself: 1600 is the page's doing
    assert answered.value.json()["query"]["size"] == [1600, 1600]
    page.wait_for_selector(".card", timeout=120_000)
    size = page.evaluate("[document.getElementById('photo-img').naturalWidth, "
                         "document.getElementById('photo-img').naturalHeight]")
    assert size == [1600, 1600]
    assert page.locator(".card").first.get_attribute("data-sku") == "RED-APPLE"
    assert np.asarray(big).shape == (6000, 6000, 3)


def test_the_error_analysis_report_opens_in_the_browser(browser, tmp_path):
    """`skulens eval G1 --ablate --html` on a small grocery-shaped set of the made-up products."""
    import csv
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    root = tmp_path / "shop"
    (root / "catalog").mkdir(parents=True)
    (root / "photos").mkdir()
    rows = []
    for i, (sku, (colour, word, shape)) in enumerate(CATALOGUE.items()):
        (root / "catalog" / f"{sku}.jpg").write_bytes(jpeg_bytes(product_image(colour, word, shape)))
        rows.append({"path": f"catalog/{sku}.jpg", "split": "catalog", "kind": "iconic", "class_id": i,
                     "class_name": sku, "coarse_class": shape, "packaged": str(shape == "box")})
        for n, angle in enumerate((12, -20)):
            shot_of = Image.fromarray(product_image(colour, word, shape, size=300)).rotate(angle, fillcolor=(90, 90, 90))
            (root / "photos" / f"{sku}_{n}.jpg").write_bytes(jpeg_bytes(np.asarray(shot_of), 70))
            rows.append({"path": f"photos/{sku}_{n}.jpg", "split": "val", "kind": "photo", "class_id": i,
                         "class_name": sku, "coarse_class": shape, "packaged": str(shape == "box")})
    # a photo of the apple filed under the milk: its right SKU cannot come first
    (root / "photos" / "mislabelled.jpg").write_bytes(jpeg_bytes(product_image(*CATALOGUE["RED-APPLE"], size=300)))
    rows.append({**rows[-1], "path": "photos/mislabelled.jpg", "class_id": 0, "class_name": "ARLA-MILK"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--data", str(tmp_path / "data"), "eval", "G1",
                           str(root), "--ablate", "--html", str(report)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "base64," in report.read_text() and "src='/" not in report.read_text()  # self-contained
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(report.as_uri())
        assert page.locator(".card").first.inner_text().endswith("recall@1")
        assert page.locator("svg.chart text").count() >= 2 * 10  # a label and a value per ablation row
        page.wait_for_function("[...document.images].every((im) => im.complete)")
        assert page.evaluate("[...document.images].every((im) => im.naturalWidth > 0)")
        first = page.locator("section.query").first  # the worst query: the mislabelled photo
        assert "mislabelled.jpg" in first.inner_text() and "ARLA-MILK" in first.inner_text()
        assert first.locator("figure.q img").count() == 1 and first.locator(".sig").count() == len(CATALOGUE)  # all four candidates
        assert first.locator("figure.hit").count() == 1  # where the right SKU landed
        confused = page.locator("table").filter(has_text="ranked first instead")
        assert "RED-APPLE" in confused.inner_text()
        shot(page, "eval-report-desktop")
    finally:
        page.close()
