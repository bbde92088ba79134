"""The Milvus vector index against a real Milvus Lite server: the same answers as exact search,
deletes, reads, and the errors a deployment meets (a server away, a collection of another size)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConflictError, StorageError
from core.settings import IndexSettings
from fusion.faiss_index import FaissIndex
from fusion.milvus_index import MilvusIndex
from tests.conftest import new_collection, open_together

pytestmark = pytest.mark.milvus
DIM = 32


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def settings(milvus_server) -> IndexSettings:
    return IndexSettings(uri=milvus_server.uri, collection=new_collection())


@pytest.mark.parametrize("kind", ["HNSW", "FLAT", "IVF_FLAT"])
def test_search_finds_what_exact_search_finds(milvus_server, kind):
    settings = IndexSettings(uri=milvus_server.uri, collection=new_collection(), milvus_index=kind, milvus_nlist=8,
                             nprobe=8)
    vectors, queries = unit_rows(600), unit_rows(20, seed=1)
    ids = np.arange(100, 700, dtype=np.int64)
    index = MilvusIndex(DIM, settings)
    index.add(ids, vectors)
    exact = FaissIndex.build(DIM, IndexSettings(kind="flat"), ids, vectors)
    sims, got = index.search(queries, 10)
    want_sims, want = exact.search(queries, 10)
    assert got.shape == sims.shape == (20, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), want.tolist())]) >= 0.95
    assert np.array_equal(got[:, 0], want[:, 0])
    np.testing.assert_allclose(sims[:, 0], want_sims[:, 0], atol=1e-4)
    index.close()


def test_add_remove_read_and_count(settings):
    vectors = unit_rows(50)
    index = MilvusIndex(DIM, settings)
    index.add(np.arange(50), vectors)
    index.add(np.arange(10), vectors[:10])  # adding again overwrites: still 50
    assert len(index) == 50 and np.array_equal(index.ids(), np.arange(50))
    index.remove(np.arange(0, 50, 2))
    assert len(index) == 25 and np.array_equal(index.ids(), np.arange(1, 50, 2))
    assert np.array_equal(index.held([1, 2, 3, 999]), [1, 3])
    np.testing.assert_allclose(index.reconstruct(np.array([7, 3])), vectors[[7, 3]], atol=1e-6)
    _, found = index.search(vectors[[4, 5]], 1)
    assert found[1, 0] == 5 and found[0, 0] != 4  # a removed vector is never found
    sims, ids = index.search(vectors[:1], 100)  # more asked for than held: the rest are -1
    assert (ids[0, 25:] == -1).all() and (ids[0, :25] >= 0).all()
    index.clear()
    assert len(index) == 0
    index.close()


def test_the_collection_survives_a_new_client_and_exact_vectors_come_from_the_database(settings):
    vectors = unit_rows(5)
    MilvusIndex(DIM, settings).add(np.arange(5), vectors)
    asked: list[list[int]] = []
    again = MilvusIndex(DIM, settings, exact=lambda ids: asked.append(ids.tolist()) or vectors[ids])
    assert len(again) == 5
    np.testing.assert_array_equal(again.reconstruct(np.array([2])), vectors[[2]])
    assert asked == [[2]]
    again.close()


def test_a_collection_of_another_dimension_is_refused_by_name(settings):
    MilvusIndex(DIM, settings).close()
    with pytest.raises(ConflictError, match=f"{settings.collection}.*dimension {DIM}.*makes 64"):
        MilvusIndex(64, settings)


def test_a_server_away_is_a_storage_error_naming_it():
    from tests.servers import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError, match=f"Milvus collection 'x' at {uri}"):
        MilvusIndex(DIM, IndexSettings(uri=uri, collection="x", milvus_timeout_s=2))


def test_filter_expressions_fold_values_as_the_facets_do():
    from core.filters import SearchFilters
    from fusion.milvus_index import filter_expression

    assert filter_expression(SearchFilters()) == ""
    assert filter_expression(SearchFilters(category=" Plant-based ", brand="Arla", tags=("Ekologisk", "vegan"),
                                           colour="Red", price_min=1, price_max=2.5)) == (
        'category == "plantbased" and brand == "arla" and array_contains_all(tags, ["ekologisk", "vegan"]) and '
        'array_contains(colours, "red") and price >= 1.0 and price <= 2.5')
    assert filter_expression(SearchFilters(category='x" or id > 0 or "')) == 'category == "x or id 0 or"'


def test_a_filtered_search_looks_only_at_the_products_the_filters_accept(settings):
    from core.filters import SearchFilters, facets

    vectors = unit_rows(40)
    products = {i: (f"P{i % 4}", facets(("fruit", "dairy")[i % 2], "", ("organic",) if i % 4 == 0 else (),
                                        float(i % 4), {"red"} if i % 4 == 1 else set())) for i in range(40)}
    index = MilvusIndex(DIM, settings, attributes=lambda ids: {int(i): products[int(i)] for i in ids if int(i) in products})
    index.add(np.arange(40), vectors)

    def found(**f) -> set[str]:
        _, ids = index.search(vectors[:3], 40, SearchFilters(**f))
        return {products[int(i)][0] for i in ids.ravel() if i >= 0}

    assert found() == {"P0", "P1", "P2", "P3"}
    assert found(category="Fruit") == {"P0", "P2"}
    assert found(tags=("organic",)) == {"P0"} and found(colour="red") == {"P1"}
    assert found(price_min=1.5, price_max=3) == {"P2", "P3"}
    assert found(category="fruit", colour="red") == set()
    del products[5]  # a vector whose product is gone meanwhile is left out
    index.add(np.array([5]), vectors[[5]])
    products[8] = ("P0", facets("dairy", "", ("organic",), 0.0, set()))  # P0's category changed
    index.refresh(np.array([8]))
    assert 8 in index.search(vectors[[8]], 1, SearchFilters(category="dairy"))[1]
    index.close()


def test_processes_opening_a_new_collection_together_share_it(settings):
    opened = open_together(lambda: MilvusIndex(DIM, settings))
    opened[0].add(np.arange(3), unit_rows(3))
    assert len(opened[3]) == 3
    for index in opened:
        index.close()
