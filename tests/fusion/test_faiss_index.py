"""FaissIndex with real FAISS: every kind finds, forgets, persists and rejects bad input."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.settings import IndexSettings
from fusion.faiss_index import FaissIndex, choose_kind

DIM, N = 32, 500
KINDS = ["flat", "ivf", "ivf-sq8", "ivf-sq4", "hnsw"]
MIN_RECALL = {"flat": 1.0, "ivf": 0.95, "ivf-sq8": 0.95, "ivf-sq4": 0.95, "hnsw": 0.98}


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


VECS = unit_vectors(N, DIM, seed=7)
IDS = np.arange(N, dtype=np.int64) * 10 + 3  # ids unrelated to positions


class StoredVectors:
    """Where a compressed index reads exact vectors from (the catalogue database in the product)."""

    def __init__(self, ids: np.ndarray = IDS, vecs: np.ndarray = VECS) -> None:
        self.rows: dict[int, np.ndarray] = {}
        self.put(ids, vecs)

    def put(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self.rows.update(zip(np.asarray(ids).tolist(), np.asarray(vecs, np.float32)))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        zero = np.zeros(DIM, np.float32)
        return np.stack([self.rows.get(i, zero) for i in ids.tolist()]) if len(ids) else np.zeros((0, DIM))


def build(kind: str, ids: np.ndarray = IDS, vecs: np.ndarray = VECS, **kw: object) -> FaissIndex:
    return FaissIndex.build(DIM, IndexSettings(kind=kind, **kw), ids, vecs, exact=StoredVectors())


def recall_at_1(index: FaissIndex, ids: np.ndarray, vecs: np.ndarray) -> float:
    return float(np.mean(index.search(vecs, 1)[1][:, 0] == ids))


@pytest.mark.parametrize("kind", KINDS)
def test_each_vector_finds_itself(kind):
    index = build(kind)
    assert index.kind == kind and len(index) == N
    assert recall_at_1(index, IDS, VECS) >= MIN_RECALL[kind]
    sims, found = index.search(VECS[:20], 5)
    assert sims.shape == found.shape == (20, 5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    np.testing.assert_allclose(sims[found[:, 0] == IDS[:20], 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_removed_ids_never_come_back_and_can_be_re_added(kind):
    index = build(kind)
    gone = IDS[::3]
    index.remove(gone)
    assert len(index) == N - len(gone)
    _, found = index.search(VECS, 20)
    assert not np.isin(found, gone).any()
    live = ~np.isin(IDS, gone)
    assert recall_at_1(index, IDS[live], VECS[live]) >= MIN_RECALL[kind]

    index.add(gone, VECS[::3])
    assert len(index) == N
    assert recall_at_1(index, IDS, VECS) >= MIN_RECALL[kind]
    _, found = index.search(VECS, 10)
    assert all(len(set(row)) == len(row) for row in found.tolist())  # no id twice


@pytest.mark.parametrize("kind", KINDS)
def test_re_added_id_answers_with_its_new_vector(kind):
    index = build(kind)
    index.remove(IDS[:1])
    index.add(IDS[:1], VECS[1:2])  # id 3 now holds vector 1
    index.exact.put(IDS[:1], VECS[1:2])  # as the database does
    sims, found = index.search(VECS[:1], 3)
    assert IDS[0] not in found[0] or sims[0][found[0] == IDS[0]][0] < 0.9
    np.testing.assert_allclose(index.reconstruct(IDS[:1]), VECS[1:2], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_returns_minus_one(kind):
    index = build(kind, IDS[:0], VECS[:0])
    assert len(index) == 0
    sims, found = index.search(VECS[:3], 4)
    assert found.shape == (3, 4) and np.all(found == -1)


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_built_empty_takes_its_first_vectors(kind):
    index = build(kind, IDS[:0], VECS[:0])
    index.add(IDS[:50], VECS[:50])
    assert len(index) == 50 and recall_at_1(index, IDS[:50], VECS[:50]) >= MIN_RECALL[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_the_index_pads_with_minus_one(kind):
    index = build(kind, IDS[:5], VECS[:5])
    _, found = index.search(VECS[:2], 10)
    assert found.shape == (2, 10)
    assert all(sorted(row[:5]) == sorted(IDS[:5].tolist()) for row in found.tolist())
    assert np.all(found[:, 5:] == -1)


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_load_gives_identical_results(tmp_path, kind):
    index = build(kind)
    index.remove(IDS[:7])
    path = tmp_path / "index" / "vectors.faiss"
    index.save(path, generation=12)
    loaded = FaissIndex.load(path, IndexSettings(kind=kind), 12, DIM, exact=index.exact)

    assert loaded is not None and loaded.kind == kind and len(loaded) == len(index)
    for a, b in zip(index.search(VECS, 10), loaded.search(VECS, 10)):
        np.testing.assert_array_equal(a, b)
    loaded.add(IDS[:7], VECS[:7])  # a loaded index stays writable
    assert len(loaded) == N and recall_at_1(loaded, IDS, VECS) >= MIN_RECALL[kind]


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("spoil", "generation", "dim"),
    [
        (None, 13, DIM),  # another generation
        (None, 12, 16),  # another dimension
        (truncate, 12, DIM),
        (lambda p: p.write_bytes(os.urandom(4096)), 12, DIM),
        (lambda p: p.write_bytes(b""), 12, DIM),
        (lambda p: p.with_suffix(".json").unlink(), 12, DIM),
        (lambda p: p.with_suffix(".json").write_text("{not json"), 12, DIM),
        (lambda p: p.unlink(), 12, DIM),
    ],
    ids=["generation", "dim", "truncated", "garbage", "empty", "no-stamp", "bad-stamp", "no-index"],
)
def test_load_returns_none_for_a_stale_or_broken_index(tmp_path, spoil, generation, dim):
    path = tmp_path / "vectors.faiss"
    build("flat").save(path, generation=12)
    if spoil is not None:
        spoil(path)
    assert FaissIndex.load(path, IndexSettings(), generation, dim) is None


@pytest.mark.parametrize(("count", "kind"), [(50, "flat"), (99, "flat"), (100, "ivf-sq4"), (200, "ivf-sq4")])
def test_build_picks_the_kind_by_size(count, kind):
    index = build("auto", IDS[:count], VECS[:count], ivf_threshold=100)
    assert index.kind == kind and len(index) == count
    assert recall_at_1(index, IDS[:count], VECS[:count]) >= MIN_RECALL[kind]


@pytest.mark.parametrize(
    ("kind", "threshold", "count", "expected"),
    [
        ("auto", 100, 0, "flat"),
        ("auto", 100, 99, "flat"),
        ("auto", 100, 100, "ivf-sq4"),
        ("auto", 50_000, 10**6, "ivf-sq4"),
        ("flat", 100, 10**6, "flat"),
        ("ivf", 100, 1, "ivf"),
        ("hnsw", 100, 0, "hnsw"),
    ],
)
def test_choose_kind(kind, threshold, count, expected):
    assert choose_kind(IndexSettings(kind=kind, ivf_threshold=threshold), count) == expected


@pytest.mark.parametrize(
    ("ids", "vecs"),
    [
        (IDS[:3], VECS[:2]),  # one id too many
        (IDS[:2], VECS[:3]),  # one vector too many
        (IDS[:2], VECS[:2, :16]),  # wrong dimension
        (IDS[:2], VECS[:2].reshape(2, 2, 16)),  # not a matrix
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_add_rejects_mismatched_input(kind, ids, vecs):
    index = build(kind, IDS[:100], VECS[:100])
    with pytest.raises(ValueError):
        index.add(ids, vecs)
    assert len(index) == 100


@pytest.mark.parametrize("kind", KINDS)
def test_search_rejects_the_wrong_dimension(kind):
    with pytest.raises(ValueError):
        build(kind, IDS[:100], VECS[:100]).search(VECS[:1, :16], 3)


@pytest.mark.parametrize("kind", KINDS)
def test_reconstruct_returns_the_stored_vectors(kind):
    index = build(kind)
    picked = np.array([0, 17, 250, N - 1])
    np.testing.assert_allclose(index.reconstruct(IDS[picked]), VECS[picked], atol=1e-6)
    assert index.reconstruct(IDS[:0]).shape == (0, DIM)


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-sq4"])
def test_compressed_search_scores_candidates_with_their_exact_vectors(kind):
    index = build(kind, rerank=50)
    queries = unit_vectors(20, DIM, seed=11)
    sims, found = index.search(queries, 10)
    exact = queries @ VECS.T
    for q in range(len(queries)):
        np.testing.assert_allclose(sims[q], exact[q, (found[q] - 3) // 10], atol=1e-6)  # exact, not the codes'
        assert np.all(np.diff(sims[q]) <= 0)
        truth = np.argsort(-exact[q])[:10] * 10 + 3
        assert len(set(found[q].tolist()) & set(truth.tolist())) >= 9


@pytest.mark.parametrize(("kind", "code_error"), [("ivf-sq8", 0.02), ("ivf-sq4", 0.08)])
def test_compressed_search_for_many_candidates_reads_only_the_best_ones_exact_vectors(kind, code_error):
    index = build(kind, rerank=20, nprobe=64)
    asked: list[int] = []
    source = index.exact
    index.exact = lambda ids: (asked.append(len(ids)), source(ids))[1]
    queries = unit_vectors(3, DIM, seed=12)
    sims, found = index.search(queries, 60)
    assert found.shape == (3, 60) and sum(asked) <= 3 * 20  # not the 60 a query asked for
    exact = queries @ VECS.T
    for q in range(3):
        assert np.all(np.diff(sims[q]) <= 0) and len(set(found[q].tolist())) == 60
        best = np.argsort(-exact[q])[:5] * 10 + 3
        assert found[q, :5].tolist() == best.tolist()  # the best re-scored exactly and first
        np.testing.assert_allclose(sims[q, :5], exact[q, (found[q, :5] - 3) // 10], atol=1e-6)
        np.testing.assert_allclose(sims[q], exact[q, (found[q] - 3) // 10], atol=code_error)  # the rest: codes' scores


def test_an_ivf_finds_its_lists_with_a_graph_and_probes_as_the_settings_say(tmp_path):
    index = build("ivf-sq8", nprobe=4)
    raw = faiss.extract_index_ivf(index._index)
    quantizer = faiss.downcast_index(raw.quantizer)
    assert isinstance(quantizer, faiss.IndexHNSW) and raw.nprobe == 4 and quantizer.hnsw.efSearch >= 4
    assert index.set_nprobe(raw.nlist + 50) == raw.nlist and quantizer.hnsw.efSearch >= raw.nlist
    index.set_nprobe(4)
    index.save(tmp_path / "v.faiss", generation=1)
    loaded = FaissIndex.load(tmp_path / "v.faiss", IndexSettings(nprobe=8), 1, DIM)  # settings changed since
    assert loaded is not None and faiss.extract_index_ivf(loaded._index).nprobe == 8
    assert recall_at_1(loaded, IDS, VECS) >= MIN_RECALL["ivf-sq8"]
    assert build("flat").set_nprobe(8) == 0


def test_a_bulk_add_puts_each_vector_in_its_nearest_list():
    vecs = unit_vectors(3000, DIM, seed=21)
    ids = np.arange(3000, dtype=np.int64) * 7 + 1
    index = FaissIndex.build(DIM, IndexSettings(kind="ivf-sq8", nprobe=8), ids, vecs)  # one add of 3000
    raw = faiss.extract_index_ivf(index._index)
    centroids = faiss.downcast_index(raw.quantizer).reconstruct_n(0, raw.nlist)
    nearest = np.argmax(vecs @ centroids.T, axis=1)
    for lst in range(raw.nlist):
        held = faiss.rev_swig_ptr(raw.invlists.get_ids(lst), raw.invlists.list_size(lst)).astype(np.int64)
        assert set(held.tolist()) == set(ids[nearest == lst].tolist())
    assert recall_at_1(index, ids, vecs) >= 0.95
    index.add(ids[:3] + 1, vecs[:3])  # and a few more, through the graph
    assert len(index) == 3003
    found = index.search(vecs[:3], 2)[1]
    assert [set(f.tolist()) for f in found] == [{int(i), int(i) + 1} for i in ids[:3]]  # a copy beside each


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-sq4"])
def test_compressed_search_drops_candidates_the_database_no_longer_holds(kind):
    index = build(kind)
    gone = IDS[:1]
    del index.exact.rows[int(gone[0])]  # deleted in the database, not yet in this (another process's) index
    sims, found = index.search(VECS[:3], 5)
    assert not np.isin(found, gone).any() and found.shape == (3, 5) and np.all(found >= 0)
    np.testing.assert_allclose(sims[1:, 0], 1.0, atol=1e-5)


def test_compressed_index_without_an_exact_source_ranks_by_its_codes():
    index = FaissIndex.build(DIM, IndexSettings(kind="ivf-sq8"), IDS, VECS)
    assert recall_at_1(index, IDS, VECS) >= 0.95
    np.testing.assert_allclose(index.reconstruct(IDS[:5]), VECS[:5], atol=0.05)  # its codes, decoded


@pytest.mark.gpu
@pytest.mark.skipif(not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0,
                    reason="faiss without GPU support or no GPU visible")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_search_matches_cpu(kind):
    gpu, cpu = build(kind), build(kind, use_gpu="never")
    assert gpu._use_gpu and not cpu._use_gpu
    np.testing.assert_array_equal(gpu.search(VECS, 5)[1], cpu.search(VECS, 5)[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), dim=st.integers(2, 12), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 45),
       data=st.data())
def test_flat_search_equals_brute_force_inner_product(n, dim, seed, k, data):
    vecs, queries = unit_vectors(n, dim, seed), unit_vectors(3, dim, seed + 1)
    ids = np.random.default_rng(seed).permutation(10 * n)[:n].astype(np.int64)
    removed = data.draw(st.sets(st.sampled_from(ids.tolist()), max_size=n))
    index = FaissIndex.build(dim, IndexSettings(kind="flat"), ids, vecs)
    index.remove(np.array(sorted(removed), np.int64))

    live = ~np.isin(ids, list(removed))
    truth = dict(zip(ids[live].tolist(), (queries @ vecs[live].T).T))
    sims, found = index.search(queries, k)
    hits = min(k, len(truth))
    assert len(index) == len(truth) and np.all(found[:, hits:] == -1)
    for q in range(len(queries)):
        row = found[q, :hits].tolist()
        assert len(set(row)) == hits and set(row) <= set(truth)
        np.testing.assert_allclose(sims[q, :hits], [truth[i][q] for i in row], atol=1e-5)  # the ids' own scores
        best = np.sort([t[q] for t in truth.values()])[::-1][:hits]
        np.testing.assert_allclose(sims[q, :hits], best, atol=1e-5)  # the best scores, ties in any order


@pytest.mark.parametrize("kind", KINDS)
def test_ids_are_the_ids_it_holds_after_adds_and_removes(kind):
    index = build(kind)
    index.remove(IDS[:7])
    np.testing.assert_array_equal(index.ids(), np.sort(IDS[7:]))
    index.add(IDS[:2], VECS[:2])
    np.testing.assert_array_equal(index.ids(), np.sort(np.concatenate([IDS[:2], IDS[7:]])))


def test_a_write_finds_its_list_with_a_narrow_graph_search_and_searches_keep_their_width():
    index = build("ivf-sq4", nprobe=16)
    raw = faiss.extract_index_ivf(index._index)
    quantizer = faiss.downcast_index(raw.quantizer)
    wide = quantizer.hnsw.efSearch
    assert wide >= 64
    fresh = unit_vectors(3, DIM, seed=31)
    index.exact.rows.update({10**9 + i: fresh[i] for i in range(3)})  # written to the database too
    index.add(np.array([10**9, 10**9 + 1, 10**9 + 2]), fresh)
    assert quantizer.hnsw.efSearch == wide  # restored for searches
    centroids = quantizer.reconstruct_n(0, raw.nlist)
    nearest = np.argmax(fresh @ centroids.T, axis=1)
    for vid, lst in zip(range(10**9, 10**9 + 3), nearest):
        held = faiss.rev_swig_ptr(raw.invlists.get_ids(int(lst)), raw.invlists.list_size(int(lst)))
        assert vid in set(held.tolist())  # in its nearest list
    assert index.search(fresh, 1)[1][:, 0].tolist() == [10**9, 10**9 + 1, 10**9 + 2]
