"""The layout past one machine, as processes on loopback: two `skulens serve` replicas and two
`skulens worker` processes on one real PostgreSQL catalogue, a real Milvus Lite collection and a
shared image folder.  An import through one replica is followed and searched through the other; a
worker killed mid-job leaves its part to the other; a replica killed with SIGKILL under load loses no
acknowledged write, and the surviving replica answers every request."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from evaluation.loadtest import new_server, submit_import, wait_job
from tests.conftest import CATALOGUE, make_catalogue, new_collection
from tests.pipeline.test_workers import start_worker, stop, wait_for

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.postgres, pytest.mark.milvus]


def test_two_replicas_and_two_workers_share_one_catalogue(tmp_path, postgres_url, milvus_server):
    from core.settings import IndexSettings, IngestSettings, Settings, StoreSettings

    settings = Settings(data=tmp_path / "unused", store=StoreSettings(url=postgres_url),
                        index=IndexSettings(uri=milvus_server.uri, collection=new_collection()),
                        files={"root": tmp_path / "shared"}, ingest=IngestSettings(part_rows=1, stalled_s=3))
    env = {"SKULENS_STORE__URL": postgres_url, "SKULENS_INDEX__URI": milvus_server.uri,
           "SKULENS_INDEX__COLLECTION": settings.index.collection, "SKULENS_FILES__ROOT": str(settings.files.root),
           "SKULENS_INGEST__PART_ROWS": "1"}
    a, b = new_server(tmp_path / "a"), new_server(tmp_path / "b")
    workers = []
    for server in (a, b):
        server.env = env
        server.start()
    try:
        workers = [start_worker(settings, tmp_path / f"w{n}", f"w{n}") for n in (1, 2)]
        catalogue = make_catalogue(tmp_path / "catalog")
        job = submit_import(a, [(sku, catalogue / f"{sku}.jpg") for sku in CATALOGUE])
        with b.client(write=True) as cb:
            assert cb.get(job["url"]).json()["state"] in ("queued", "running")  # B knows A's job
            running = wait_for(lambda: cb.get(job["url"]).json()["state"] == "running", 120)
        assert running
        workers[0].kill()  # a worker dies mid-job
        final = wait_job(b, job["url"], timeout_s=300)
        assert final["state"] == "done" and final["done"] == final["total"] == 4, final
        with b.client() as cb:  # found through the other replica
            hits = wait_for(lambda: [m["sku"] for m in cb.post("/v1/search/text", json={"text": "lime"}).json()["results"]])
            assert hits == ["LIME"]

        acked: list[str] = []
        statuses: list[int] = []
        stop_load = threading.Event()

        def write_through_a() -> None:
            with a.client(write=True) as ca:
                for n in range(10_000):
                    if stop_load.is_set():
                        return
                    sku = f"LOAD-{n}"
                    try:
                        res = ca.put(f"/v1/products/{sku}", json={"title": f"load{n} item"})
                    except httpx.HTTPError:
                        return  # A is gone: this write was never acknowledged
                    if res.status_code == 200:
                        acked.append(sku)

        def search_through_b() -> None:
            with b.client() as cb:
                while not stop_load.is_set():
                    statuses.append(cb.post("/v1/search/text", json={"text": "product", "k": 5}).status_code)

        threads = [threading.Thread(target=write_through_a), threading.Thread(target=search_through_b)]
        for t in threads:
            t.start()
        assert wait_for(lambda: len(acked) >= 20, 60)
        a.kill()  # SIGKILL under load
        time.sleep(2)
        stop_load.set()
        for t in threads:
            t.join(60)
        assert statuses and set(statuses) == {200}  # the surviving replica answered every request
        with b.client() as cb:
            for sku in acked:  # every acknowledged write is there, and B's searches find it
                assert cb.get(f"/v1/products/{sku}").status_code == 200, sku
            last = acked[-1].split("-")[1]
            assert wait_for(lambda: [m["sku"] for m in cb.post("/v1/search/text", json={"text": f"load{last}"})
                                     .json()["results"]] == [acked[-1]], 10)
    finally:
        stop(*workers)
        a.stop()
        b.stop()
