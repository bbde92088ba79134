"""The HTTP service with the real pipeline: every route's happy path, auth, and bad input."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image

from core.settings import Settings
from pipeline.engine import Engine
from service.app import create_app
from service.middleware import BodyLimit
from service.security import KeyCheck
from tests.conftest import CATALOGUE, jpeg_bytes, make_catalogue, product_image

pytestmark = [pytest.mark.model, pytest.mark.slow]

READ, WRITE = "read-key-123", "write-key-456"
R = {"Authorization": f"Bearer {READ}"}
W = {"Authorization": f"Bearer {WRITE}"}


@pytest.fixture(scope="module")
def client(real_stages, tmp_path_factory):
    """A service on a data directory holding the four made-up products, with keys set."""
    root = tmp_path_factory.mktemp("svc")
    settings = Settings(data=root / "data", api_read_keys=[READ], api_write_keys=[WRITE])
    folder = make_catalogue(root / "catalog")
    rows = ["sku,image,title,brand,category,tags,price"]
    for sku, (_, word, shape) in CATALOGUE.items():
        rows.append(f"{sku},{sku}.jpg,{word.title()} product,{word.title()},{shape},demo;{shape},{len(sku)}.5")
    manifest = "\n".join(rows).encode()
    app = create_app(settings, lambda s: Engine(s, real_stages))
    with TestClient(app) as c:
        files = [("manifest", ("catalog.csv", manifest, "text/csv"))]
        files += [("file", (f"{sku}.jpg", (folder / f"{sku}.jpg").read_bytes(), "image/jpeg")) for sku in CATALOGUE]
        res = c.post("/v1/import", files=files, headers=W)
        assert res.status_code == 202, res.text
        assert res.headers["location"] == res.json()["url"]
        job = finished_job(c, res.json()["url"])
        assert job["state"] == "done" and job["counts"]["indexed"] == len(CATALOGUE), job
        c.app.state.ready.wait(120)
        yield c


def finished_job(client, url: str, timeout_s: float = 300) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        job = client.get(url, headers=W).json()
        if job["state"] in ("done", "failed", "interrupted"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {url} did not end")


def photo(sku: str, fmt: str = "JPEG") -> bytes:
    colour, word, shape = CATALOGUE[sku]
    img = Image.fromarray(product_image(colour, word, shape, size=300)).rotate(8, fillcolor="white")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_import_job_reports_per_row_and_skips_what_was_not_uploaded(client):
    manifest = b"sku,image,title\nGHOST,missing.jpg,Not uploaded\nESCAPE,../../etc/passwd,Nope\n,x.jpg,no sku\n"
    res = client.post("/v1/import", files=[("manifest", ("m.csv", manifest, "text/csv"))], headers=W)
    assert res.status_code == 202, res.text
    assert res.json()["state"] in ("queued", "running", "done") and res.json()["total"] == 3
    job = finished_job(client, res.json()["url"])
    assert job["state"] == "done" and job["done"] == 3, job
    assert job["counts"] == {"indexed": 0, "unchanged": 0, "skipped": 3}
    reasons = {r["item"].split(" ")[0]: r["reason"] for r in job["errors"]}
    assert "not uploaded" in reasons["GHOST"] and "not uploaded" in reasons["ESCAPE"]
    assert client.get("/v1/products/GHOST", headers=R).status_code == 404
    assert job["id"] in [j["id"] for j in client.get("/v1/jobs", headers=W).json()["items"]]
    assert client.get("/v1/jobs/0123456789abcdef", headers=W).status_code == 404
    assert client.get(job["url"], headers=R).status_code == 403  # jobs are the merchant's


def test_search_ranks_the_right_product_first_with_every_signal(client):
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("RED-APPLE"), "image/jpeg")}, data={"k": "3"},
                      headers=R)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["results"][0]["sku"] == "RED-APPLE"
    assert set(body["results"][0]["signals"]) == {"embedding", "colour", "tags", "text", "verify", "semantic"}
    assert body["query"]["boxes"] and body["query"]["palette"]["hex"]
    assert {"detect", "embed", "rank"} <= set(body["query"]["timings_ms"])
    thumb = client.get(body["results"][0]["image_url"], headers=R)
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/")
    Image.open(io.BytesIO(thumb.content)).verify()


def test_search_all_objects_filters_and_weights(client):
    res = client.post("/v1/search", files={"file": ("q.png", photo("LIME", "PNG"), "image/png")},
                      data={"all_objects": "true", "k": "4", "weights": "embedding=1,colour=0,tags=0,text=0"},
                      headers=R)
    assert res.status_code == 200, res.text
    groups = res.json()
    assert isinstance(groups, list) and groups[0]["results"][0]["sku"] == "LIME"
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                      data={"filters": json.dumps({"category": "BOX"})}, headers=R)
    assert res.status_code == 200, res.text
    assert {r["sku"] for r in res.json()["results"]} == {"ARLA-MILK", "OATLY-OAT"}  # the lime is an ellipse
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                      data={"filters": json.dumps({"price_max": 5})}, headers=R)
    assert [r["sku"] for r in res.json()["results"]] == ["LIME"]  # price 4.5


def test_text_search_finds_titles_brands_and_colour_words(client):
    res = client.post("/v1/search/text", json={"text": "oatly"}, headers=R)
    assert res.status_code == 200, res.text
    assert res.json()["results"][0]["sku"] == "OATLY-OAT"
    res = client.post("/v1/search/text", json={"text": "red", "k": 2}, headers=R)
    assert res.json()["results"][0]["sku"] == "RED-APPLE"
    res = client.post("/v1/search/text", json={"text": "product", "filters": {"tags": ["ellipse"]}}, headers=R)
    assert {r["sku"] for r in res.json()["results"]} == {"RED-APPLE", "LIME"}


def test_a_photo_is_described_and_a_product_gets_suggested_tags(client):
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")}, headers=R).json()
    query = res["query"]
    assert query["describe"][0] == "green"  # its colour first, then the catalogue's words near it
    assert all(w["word"] in query["describe"] and -1 <= w["cosine"] <= 1 for w in query["words"])
    assert res["results"][0]["signals"]["semantic"] == 0  # no typed words
    tags = client.get("/v1/products/LIME/suggested-tags", headers=R)
    assert tags.status_code == 200, tags.text
    body = tags.json()
    assert body["sku"] == "LIME" and body["source"] == "ConSE" and body["colours"] == ["green"]
    assert "lime" not in [w["word"] for w in body["words"]]  # its title says so already
    missing = client.get("/v1/products/NO-SUCH/suggested-tags", headers=R)
    assert missing.status_code == 404 and "NO-SUCH" in missing.json()["detail"]
    assert client.get("/v1/products/LIME/suggested-tags?k=0", headers=R).status_code == 422


def test_results_explain_themselves_and_filters_say_why_they_match_nothing(client):
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")}, headers=R).json()
    top = res["results"][0]
    assert top["sku"] == "LIME" and top["brand"] == "Lime" and top["category"] == "ellipse" and top["price"] == 4.5
    assert set(res["weights"]) == {"embedding", "colour", "tags", "text", "verify", "semantic"} and res["close"] is True
    assert res["notes"] == []
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                      data={"filters": json.dumps({"brand": "Nobrand", "colour": "purple"})}, headers=R).json()
    assert res["results"] == []
    assert res["notes"][0].startswith("no product has the brand 'Nobrand' (brands: ")
    assert "colour 'purple'" in res["notes"][1]
    res = client.post("/v1/search/text", json={"text": "lime", "filters": {"category": "shoes"}}, headers=R).json()
    assert res["results"] == [] and "category 'shoes'" in res["notes"][0] and res["close"] is None


def test_words_with_a_filter_return_only_what_the_words_match(client):
    res = client.post("/v1/search/text", json={"text": "lime", "filters": {"tags": ["demo"]}}, headers=R).json()
    assert [r["sku"] for r in res["results"]] == ["LIME"]  # not padded with 0.000-score products
    assert all(r["score"] > 0 for r in res["results"])


def test_facets_list_what_the_filters_take(client):
    f = client.get("/v1/facets", headers=R).json()
    assert f["products"] == len(CATALOGUE)
    assert {c["value"] for c in f["categories"]} == {"box", "ellipse"}
    assert {b["value"] for b in f["brands"]} == {"Arla", "Oatly", "Apple", "Lime"}  # as the catalogue spells them
    assert sum(c["count"] for c in f["categories"]) == len(CATALOGUE)
    assert {"value": "demo", "count": len(CATALOGUE)} in f["tags"]
    assert f["price"]["products"] == len(CATALOGUE) and f["price"]["min"] <= f["price"]["max"]
    assert f["colours"] and all(c["count"] >= 1 for c in f["colours"])


def test_catalogue_lifecycle_is_visible_to_the_next_search(client):
    sku = "BLUE-CUP"
    res = client.put(f"/v1/products/{sku}", json={"title": "Blue cup", "brand": "Cupco", "tags": ["kitchen"],
                                                   "price": 3.0}, headers=W)
    assert res.status_code == 200, res.text
    assert res.json()["images"] == []
    img = jpeg_bytes(product_image((20, 40, 230), "CUP", "ellipse"))
    res = client.post(f"/v1/products/{sku}/images", files=[("file", ("cup.jpg", img, "image/jpeg"))], headers=W)
    assert res.status_code == 201, res.text
    image_id = res.json()["images"][0]["id"]
    res = client.patch(f"/v1/products/{sku}", json={"price": 2.5, "category": "cups"}, headers=W)
    assert res.status_code == 200 and res.json()["price"] == 2.5 and res.json()["title"] == "Blue cup"
    page = client.get("/v1/products", params={"category": "CUPS"}, headers=R).json()
    assert page["total"] == 1 and page["items"][0]["sku"] == sku
    top = client.post("/v1/search", files={"file": ("q.jpg", img, "image/jpeg")}, headers=R).json()
    assert top["results"][0]["sku"] == sku
    assert client.delete(f"/v1/products/{sku}/images/{image_id}", headers=W).status_code == 204
    assert client.get(f"/v1/products/{sku}/images/{image_id}", headers=R).status_code == 404
    assert client.delete(f"/v1/products/{sku}", headers=W).status_code == 204
    top = client.post("/v1/search", files={"file": ("q.jpg", img, "image/jpeg")}, headers=R).json()
    assert sku not in [r["sku"] for r in top["results"]]
    assert client.get(f"/v1/products/{sku}", headers=R).status_code == 404


def test_listing_is_paged(client):
    first = client.get("/v1/products", params={"limit": 2}, headers=R).json()
    second = client.get("/v1/products", params={"limit": 2, "offset": 2}, headers=R).json()
    assert first["total"] == second["total"] == len(CATALOGUE)
    skus = [p["sku"] for p in first["items"] + second["items"]]
    assert skus == sorted(CATALOGUE)


def test_a_product_and_its_first_images_are_created_together_or_not_at_all(client):
    img = jpeg_bytes(product_image((20, 160, 60), "JAR", "box"))
    product = json.dumps({"sku": "GREEN-JAR", "title": "Green jar", "brand": "Jarco", "price": 4.0})
    bad = [("file", ("jar.jpg", img, "image/jpeg")), ("file", ("notes.jpg", b"text, not a picture", "image/jpeg"))]
    res = client.post("/v1/products", data={"product": product}, files=bad, headers=W)
    assert res.status_code == 415 and "notes.jpg" in res.json()["detail"], res.text
    assert client.get("/v1/products/GREEN-JAR", headers=R).status_code == 404  # the good image did not make it
    hits = client.post("/v1/search/text", json={"text": "green jar"}, headers=R).json()["results"]
    assert "GREEN-JAR" not in [r["sku"] for r in hits]
    res = client.post("/v1/products", data={"product": product}, files=[("file", ("jar.jpg", img, "image/jpeg"))],
                      headers=W)
    assert res.status_code == 201, res.text
    assert res.json()["title"] == "Green jar" and len(res.json()["images"]) == 1
    try:
        again = json.dumps({"sku": "GREEN-JAR", "title": "Another jar"})
        res = client.post("/v1/products", data={"product": again}, files=[("file", ("b.jpg", photo("LIME"), "image/jpeg"))],
                          headers=W)
        assert res.status_code == 409 and res.json()["error"] == "conflict", res.text
        assert "PATCH" in res.json()["detail"]
        kept = client.get("/v1/products/GREEN-JAR", headers=R).json()
        assert kept["title"] == "Green jar" and len(kept["images"]) == 1  # nothing clobbered, nothing appended
    finally:
        assert client.delete("/v1/products/GREEN-JAR", headers=W).status_code == 204


@pytest.mark.parametrize("product,needle", [
    ('{"sku": "a/b"}', "'/'"),
    ('{"title": "no sku"}', "sku"),
    ('{"sku": "X", "colour": "red"}', "unknown field 'colour' (known: "),
    ('["X"]', "JSON object"),
    ("{not json", "JSON object"),
])
def test_a_bad_new_product_is_a_clear_400(client, product, needle):
    res = client.post("/v1/products", data={"product": product},
                      files=[("file", ("a.jpg", photo("LIME"), "image/jpeg"))], headers=W)
    assert res.status_code == 400 and res.json()["error"] == "invalid_input", res.text
    assert needle in res.json()["detail"] and "pydantic" not in res.json()["detail"]


def test_an_unknown_filter_names_the_known_ones(client):
    res = client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                      data={"filters": '{"size": "L"}'}, headers=R)
    assert res.status_code == 400, res.text
    assert res.json()["detail"].startswith("bad filters: unknown field 'size' (known: category, brand, tags")
    assert "pydantic" not in res.text
    res = client.post("/v1/search/text", json={"text": "lime", "filters": {"size": "L"}}, headers=R)
    assert res.status_code == 422 and res.json()["detail"] == "unknown field 'filters.size'", res.text


def test_listing_finds_by_words_flags_and_orders(client):
    assert client.put("/v1/products/BARE-ONE", json={"title": "Bare 100% thing"}, headers=W).status_code == 200
    try:
        found = client.get("/v1/products", params={"q": "lim"}, headers=R).json()
        assert [p["sku"] for p in found["items"]] == ["LIME"] and found["total"] == 1
        assert client.get("/v1/products", params={"q": "100%"}, headers=R).json()["total"] == 1  # % is a character
        assert client.get("/v1/products", params={"q": "_"}, headers=R).json()["total"] == 0
        bare = client.get("/v1/products", params={"without_images": "true"}, headers=R).json()
        assert [p["sku"] for p in bare["items"]] == ["BARE-ONE"]
        newest = client.get("/v1/products", params={"sort": "newest", "limit": 1}, headers=R).json()
        assert newest["items"][0]["sku"] == "BARE-ONE"
        assert client.get("/v1/products", params={"sort": "price"}, headers=R).status_code == 422
    finally:
        assert client.delete("/v1/products/BARE-ONE", headers=W).status_code == 204


@pytest.mark.parametrize("method,url", [
    ("post", "/v1/search/text"), ("get", "/v1/products"), ("get", "/v1/products/LIME"),
    ("put", "/v1/products/X"), ("delete", "/v1/products/LIME"), ("post", "/v1/import"),
])
def test_missing_or_unknown_key_is_401_and_changes_nothing(client, method, url):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        res = getattr(client, method)(url, headers=headers)
        assert res.status_code == 401, (url, res.text)
        assert res.json()["error"] == "unauthorized" and res.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/products/LIME", headers=R).status_code == 200


def test_read_key_cannot_write_but_write_key_can_search(client):
    res = client.put("/v1/products/X", json={"title": "x"}, headers=R)
    assert res.status_code == 403 and res.json()["error"] == "forbidden"
    assert client.delete("/v1/products/LIME", headers=R).status_code == 403
    assert client.get("/v1/products/X", headers=W).status_code == 404
    assert client.post("/v1/search/text", json={"text": "lime"}, headers=W).status_code == 200


@pytest.mark.parametrize("name,content,status,kind", [
    ("empty.jpg", b"", 422, "invalid_image"),
    ("notes.txt", b"hello, not an image", 415, "unsupported_type"),
    ("cut.jpg", None, 422, "invalid_image"),
    ("tiny.png", "tiny", 422, "invalid_image"),
])
def test_bad_uploads_are_4xx_json_and_lose_nothing(client, name, content, status, kind):
    if content is None:
        content = photo("LIME")[:400]
    elif content == "tiny":
        buf = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buf, "PNG")
        content = buf.getvalue()
    before = client.get("/v1/products/LIME", headers=R).json()
    res = client.post("/v1/search", files={"file": (name, content, "application/octet-stream")}, headers=R)
    assert res.status_code == status, res.text
    assert res.json()["error"] == kind and "Traceback" not in res.text
    res = client.post("/v1/products/LIME/images", files=[("file", (name, content, "image/jpeg"))], headers=W)
    assert res.status_code == status, res.text
    assert client.get("/v1/products/LIME", headers=R).json() == before


def test_bad_requests_are_clear_4xx(client):
    cases = [
        client.post("/v1/search", data={"k": "3"}, headers=R),  # no file
        client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                    data={"weights": "sparkle=2"}, headers=R),
        client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                    data={"filters": "{not json"}, headers=R),
        client.post("/v1/search", files={"file": ("q.jpg", photo("LIME"), "image/jpeg")},
                    data={"k": "100000"}, headers=R),
        client.post("/v1/search/text", json={"text": ""}, headers=R),
        client.put("/v1/products/X", json={"price": -1}, headers=W),
        client.put("/v1/products/X", json={"colour": "red"}, headers=W),
        client.get("/v1/products", params={"limit": 0}, headers=R),
        client.post("/v1/products/NOPE/images", files=[("file", ("a.jpg", photo("LIME"), "image/jpeg"))],
                    headers=W),
        client.delete("/v1/products/LIME/images/999999", headers=W),
        client.post("/v1/import", files=[("manifest", ("m.csv", b"\xff\xfe\x00bad", "text/csv"))], headers=W),
    ]
    for res in cases:
        assert 400 <= res.status_code < 500, res.text
        body = res.json()
        assert set(body) == {"error", "detail"} and body["detail"], body
    assert client.get("/v1/products/X", headers=R).status_code == 404


def test_oversized_body_is_refused_before_reading(client):
    limit = client.app.state.settings.images.max_bytes
    res = client.post("/v1/search", headers={**R, "Content-Length": str(limit * 1000)}, content=b"x" * 10)
    assert res.status_code == 413 and res.json()["error"] == "too_large"


def test_operations_routes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["products"] == len(CATALOGUE)
    assert ready.json()["embedder"] == "efficientnet-lite2-imagenet" and ready.json()["embedder_runtime"] in ("torch", "onnx")
    text = client.get("/metrics").text
    assert 'skulens_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'skulens_stage_seconds_count{stage="embed"}' in text
    assert 'skulens_catalogue_size{kind="products"} 4.0' in text
    schema = client.get("/openapi.json").json()
    assert "/v1/search" in schema["paths"] and "/v1/products/{sku}/images/{image_id}" in schema["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'capture="environment"' in page.text
    assert client.get("/merchant").status_code == 200
    assert client.get("/static/shopper.js").status_code == 200
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/no/such/page").json() == {"error": "not_found", "detail": "no route GET /no/such/page"}
    slash = client.put("/v1/products/a/b", json={"title": "x"}, headers=W)
    assert slash.status_code == 404 and "a SKU cannot hold '/'" in slash.json()["detail"]


def test_concurrent_searches_and_writes_never_see_half_a_write(client):
    """Searches running while a product is added and removed see it whole or not at all."""
    img = jpeg_bytes(product_image((250, 200, 0), "SUN", "ellipse"))
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for i in range(3):
                client.put("/v1/products/SUN", json={"title": f"Sun {i}"}, headers=W)
                client.post("/v1/products/SUN/images", files=[("file", ("s.jpg", img, "image/jpeg"))], headers=W)
                client.delete("/v1/products/SUN", headers=W)
        finally:
            stop.set()

    def reader() -> None:
        while not stop.is_set():
            res = client.post("/v1/search", files={"file": ("q.jpg", img, "image/jpeg")}, data={"k": "5"},
                              headers=R)
            if res.status_code != 200:
                errors.append(res.text)
                continue
            for r in res.json()["results"]:
                # between the PUT and the image upload SUN is a product without images, which the
                # words read on the photo may find (embedding 0): a whole state, not half a write
                if r["sku"] == "SUN" and r["image_id"] is None and r["signals"]["embedding"] > 0:
                    errors.append("SUN matched by its vectors but listed without its image")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[:3]


def test_key_check_is_exact():
    keys = KeyCheck(["r1"], ["w1", "w2"])
    assert keys.role("r1") == "read" and keys.role("w2") == "write"
    assert keys.role("r") is None and keys.role("r1 ") is None and keys.role(None) is None
    assert KeyCheck([], []).open and not keys.open


def test_streamed_body_over_the_limit_is_413():
    """Without a Content-Length the limit is enforced while the body streams in."""
    inner = FastAPI()

    @inner.post("/echo")
    async def echo(request: Request):
        return {"n": len(await request.body())}

    app = BodyLimit(inner, max_bytes=1000)

    def chunks():
        for _ in range(10):
            yield b"x" * 300

    with TestClient(app) as c:
        assert c.post("/echo", content=b"x" * 900).json() == {"n": 900}
        res = c.post("/echo", content=chunks())
        assert res.status_code == 413


def test_duplicates_of_the_catalogue_and_of_a_photo(client):
    colour, word, shape = CATALOGUE["RED-APPLE"]
    copy = np.asarray(Image.fromarray(product_image(colour, word, shape)).resize((250, 250)))
    assert client.put("/v1/products/APPLE-AGAIN", json={"title": "Apple, listed twice"}, headers=W).status_code in (200, 201)
    res = client.post("/v1/products/APPLE-AGAIN/images", files={"file": ("a.jpg", jpeg_bytes(copy, 70), "image/jpeg")},
                      headers=W)
    assert res.status_code == 201, res.text
    try:
        assert client.get("/v1/duplicates").status_code == 401
        res = client.get("/v1/duplicates", headers=R)
        assert res.status_code == 200, res.text
        body = res.json()
        assert [g["skus"] for g in body["groups"]] == [["APPLE-AGAIN", "RED-APPLE"]]
        im = body["groups"][0]["images"][0]
        assert client.get(im["url"], headers=R).status_code == 200
        upload = jpeg_bytes(np.asarray(Image.fromarray(product_image(colour, word, shape)).resize((290, 290))), 50)
        res = client.post("/v1/duplicates", files={"file": ("q.jpg", upload, "image/jpeg")}, headers=R)
        assert res.status_code == 200, res.text
        group = res.json()["groups"][0]
        assert set(group["skus"]) == {"APPLE-AGAIN", "RED-APPLE"}
        assert group["images"][0]["sku"] is None and group["images"][0]["file"] == "q.jpg"
        res = client.post("/v1/duplicates", files={"file": ("x.jpg", b"not an image", "image/jpeg")}, headers=R)
        assert res.status_code in (400, 415) and res.json()["error"]
    finally:
        assert client.delete("/v1/products/APPLE-AGAIN", headers=W).status_code == 204
