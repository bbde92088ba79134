"""What only the PostgreSQL store has: a server that may be away, migrations several processes may
run at once, values PostgreSQL refuses, and several processes writing one catalogue."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.catalog import Product
from core.errors import InvalidInputError, StorageError
from core.settings import Settings, StoreSettings
from pipeline.store import catalogue_meta, catalogue_name, open_store
from pipeline.store_postgres import SCHEMA_VERSION, PostgresStore, redacted
from tests.conftest import open_together
from tests.pipeline.test_store import DIM, SHOE, image

pytestmark = pytest.mark.postgres


def test_an_unreachable_server_is_a_storage_error_naming_it_without_its_password(postgres_server):
    from tests.servers import free_port

    url = f"postgresql://shop:secret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StorageError, match=r"cannot reach the PostgreSQL catalogue postgresql://shop:\*\*\*@") as err:
        PostgresStore(url, StoreSettings(url=url, connect_timeout_s=1))
    assert "secret" not in str(err.value)
    assert redacted("postgresql://a@h/db") == "postgresql://a@h/db"


def test_a_database_that_does_not_keep_utf8_is_refused_with_the_command_that_makes_one(postgres_server):
    """initdb with the C locale makes SQL_ASCII databases; psycopg hands their text back as bytes."""
    import psycopg

    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ascii_shop ENCODING 'SQL_ASCII' TEMPLATE template0")
    with pytest.raises(StorageError, match=r"'ascii_shop' .* keeps text as SQL_ASCII.*createdb -E UTF8 -T template0"):
        PostgresStore(postgres_server.url("ascii_shop"))
    with psycopg.connect(postgres_server.url("ascii_shop")) as conn:  # and nothing was made in it
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def test_processes_opening_a_new_database_together_migrate_it_once(postgres_url):
    stores = open_together(lambda: PostgresStore(postgres_url))
    assert stores[0].get_meta("schema_version") == str(SCHEMA_VERSION)
    for s in stores:
        s.close()


def test_a_newer_schema_is_refused_by_name(postgres_url):
    store = PostgresStore(postgres_url)
    store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade skulens"):
        PostgresStore(postgres_url)


def test_a_value_postgresql_cannot_hold_is_refused_and_nothing_is_written(postgres_url):
    store = PostgresStore(postgres_url)
    store.write_product(SHOE, [image("a")], replace_images=True)
    with pytest.raises(InvalidInputError, match="cannot store"):
        store.write_product(Product("SKU-2", title="nul \x00 inside"), [image("b")], replace_images=True)
    assert store.count() == (1, 1, 2) and store.generation() == 1
    store.close()


def test_two_processes_writing_one_catalogue_see_each_others_writes_and_never_share_an_id(postgres_url):
    a, b = PostgresStore(postgres_url), PostgresStore(postgres_url)
    results: list = []

    def write(store: PostgresStore, prefix: str) -> None:
        for n in range(10):
            results.append(store.write_product(Product(f"{prefix}-{n}"), [image(f"{prefix}{n}")], replace_images=True))

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = np.concatenate([r.added_ids for r in results])
    assert len(set(ids.tolist())) == 40
    assert a.count() == b.count() == (20, 20, 40) and a.generation() == b.generation() == 20
    assert np.array_equal(np.sort(ids), b.vector_ids())
    assert [p.sku for p in a.list_products(limit=-1)] == sorted(f"{p}-{n}" for p in "AB" for n in range(10))
    a.close()
    b.close()


def test_settings_choose_the_store_and_name_it(postgres_url, tmp_path):
    settings = Settings(data=tmp_path / "data", store=StoreSettings(url=postgres_url))
    store = open_store(settings)
    assert isinstance(store, PostgresStore)
    store.write_product(SHOE, [image("a")], replace_images=True)
    store.set_meta("embedder", "effnet:1280")
    store.close()
    assert catalogue_meta(settings, "embedder") == "effnet:1280"
    assert catalogue_name(settings) == postgres_url
    assert not (tmp_path / "data").exists()  # nothing of the catalogue lands in the data directory
    again = open_store(settings)
    assert again.vectors(DIM)[0].shape == (2,)
    again.close()
