"""Text normalisation, IDF scoring with OCR-tolerant matching, and FTS5 expressions."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from core.words import normalise
from fusion.text import STOP_WORDS, TextScorer, fts_match_expression, part_similarity, tokenize


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Arlagårdar", "arlagardar"),
        ("MJÖLK", "mjolk"),
        ("Café", "cafe"),
        ("Smør", "smor"),
        ("Straße", "strasse"),
        ("1,5%", "15"),
        ("«Oatly!»", "oatly"),
        ("ﬁsh", "fish"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_normalise(word: str, expected: str) -> None:
    assert normalise(word) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Arlagårdar Mellanmjölk 1,5%", ["arlagardar", "mellanmjolk"]),
        ("The Milk of the Farm, with Love", ["milk", "farm", "love"]),
        ("oat-drink/barista edition", ["oat", "drink", "barista", "edition"]),
        ("Ko 500ml", ["ko", "500ml"]),
        ("a", []),
        ("", []),
        ("café™ crème", ["cafe", "creme"]),
        ("A\u030arsta", ["arsta"]),  # decomposed å stays inside the word
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_min_length_and_stop_words() -> None:
    assert tokenize("ab abc abcd", min_length=4) == ["abcd"]
    assert {"the", "and", "of", "with", "for", "from", "is", "a", "in", "to"} <= STOP_WORDS


def catalogue(*docs: str) -> tuple[TextScorer, list[frozenset[str]]]:
    sets = [frozenset(tokenize(d)) for d in docs]
    df: dict[str, int] = {}
    for s in sets:
        for t in s:
            df[t] = df.get(t, 0) + 1
    return TextScorer(df, len(sets), scale=6.0), sets


SHOP = catalogue(
    "Arla Ko mellanmjölk", "Arla yoghurt naturell", "Oatly havredryck", "Arlagårdar smör", "Skånemejerier milk"
)


def test_exact_match_scores_the_idf() -> None:
    scorer, docs = SHOP
    unit = math.log(6 / 1.5)  # the IDF of a word one entry holds: one unit of evidence
    expected = 1 - math.exp(-scorer.idf("oatly") / (6.0 * unit))
    assert scorer.score([("oatly", 1.0)], docs[2]) == pytest.approx(expected)
    assert scorer.idf("oatly") == pytest.approx(math.log(6 / 1.5))


@pytest.mark.parametrize(
    ("query", "doc", "matches"),
    [
        ("yoghort", 1, True),  # one substitution in a long word
        ("yogurt", 1, True),  # one deletion
        ("havredrycks", 2, True),  # one insertion (and a prefix)
        ("arlagard", 3, True),  # the start of a longer word
        ("mellanmjolkx", 0, True),  # the catalogue word is a prefix of the query
        ("aria", 0, False),  # OCR's arIa: too short for fuzzy matching
        ("arl", 0, False),  # too short for prefix matching
        ("yxghxrt", 1, False),  # two wrong letters in seven
        ("lattyoghurt", 1, True),  # a compound holding a catalogue word
        ("mijolk", 0, False),  # a misread word matches whole words only (mellanmjolk is one)
        ("silk", 4, False),  # short words must match exactly
        ("banana", 0, False),
    ],
)
def test_fuzzy_matching(query: str, doc: int, matches: bool) -> None:
    scorer, docs = SHOP
    assert (scorer.score([(query, 1.0)], docs[doc]) > 0) is matches


def test_no_match_scores_zero() -> None:
    scorer, docs = SHOP
    assert scorer.score([], docs[0]) == 0.0
    assert scorer.score([("oatly", 1.0), ("havredryck", 0.9)], docs[0]) == 0.0


def test_rare_words_weigh_more_than_common_ones() -> None:
    scorer, docs = SHOP
    assert scorer.idf("arla") < scorer.idf("ko")
    assert scorer.score([("ko", 1.0)], docs[0]) > scorer.score([("arla", 1.0)], docs[0])


def test_weights_and_distinct_tokens() -> None:
    scorer, docs = SHOP
    full = scorer.score([("oatly", 1.0)], docs[2])
    assert scorer.score([("oatly", 0.5)], docs[2]) < full
    assert scorer.score([("oatly", 0.5), ("oatly", 1.0), ("oatly", 1.0)], docs[2]) == pytest.approx(full)
    with pytest.raises(ValueError, match="weights in"):
        scorer.score([("oatly", 1.5)], docs[2])


def test_unknown_words_weigh_nothing() -> None:
    scorer = TextScorer({"arla": 2}, n_docs=3, scale=6.0)
    assert scorer.idf("oatly") == 0.0
    assert scorer.score([("oatly", 1.0)], frozenset({"oatly", "arla"})) == 0.0
    assert scorer.matches("oatlyy") == {}
    with pytest.raises(ValueError):
        TextScorer({}, 0, scale=0.0)


def test_score_many_equals_score() -> None:
    scorer, docs = SHOP
    query = [("arla", 0.9), ("yoghort", 0.7), ("smor", 1.0)]
    many = scorer.score_many(query, docs)
    assert many.tolist() == pytest.approx([scorer.score(query, d) for d in docs], abs=1e-6)


# -- properties ----------------------------------------------------------------------

words = st.text("abcdefgh", min_size=2, max_size=8)
weights = st.floats(0.0, 1.0)


@st.composite
def scorer_query_doc(draw: st.DrawFn) -> tuple[TextScorer, list[tuple[str, float]], frozenset[str]]:
    docs = draw(st.lists(st.frozensets(words, min_size=1, max_size=6), min_size=1, max_size=8))
    df: dict[str, int] = {}
    for d in docs:
        for t in d:
            df[t] = df.get(t, 0) + 1
    scorer = TextScorer(df, len(docs), draw(st.floats(0.1, 20.0)))
    query = draw(st.lists(st.tuples(words, weights), max_size=8))
    return scorer, query, draw(st.sampled_from(docs))


@given(scorer_query_doc())
def test_score_is_in_unit_interval(case: tuple) -> None:
    scorer, query, doc = case
    assert 0.0 <= scorer.score(query, doc) <= 1.0


@given(scorer_query_doc(), st.data())
def test_adding_a_matching_token_never_lowers_the_score(case: tuple, data: st.DataObject) -> None:
    scorer, query, doc = case
    token = data.draw(st.sampled_from(sorted(doc)))
    extra = (token, data.draw(weights))
    assert scorer.score([*query, extra], doc) >= scorer.score(query, doc)


@given(scorer_query_doc(), st.text("0123456789", min_size=1, max_size=8), weights)
def test_adding_a_non_matching_token_changes_nothing(case: tuple, digits: str, weight: float) -> None:
    scorer, query, doc = case  # catalogue words are letters only, so digits never match
    assert scorer.score([*query, (digits, weight)], doc) == scorer.score(query, doc)


def test_matches_count_by_similarity() -> None:
    scorer = TextScorer({"tropicana": 1, "mjolk": 1, "yoghurt": 1, "naturell": 1}, n_docs=4, scale=6.0)
    idf = scorer.idf("mjolk")
    assert scorer.matches("tropican") == {"tropicana": pytest.approx(idf * part_similarity("tropican", "tropicana"))}
    assert scorer.matches("mijolk") == {"mjolk": pytest.approx(idf * fuzz.ratio("mijolk", "mjolk") / 100)}
    assert scorer.matches("lattyoghurt") == {"yoghurt": pytest.approx(idf * part_similarity("yoghurt", "lattyoghurt"))}
    assert 0 < scorer.matches("natu")["naturell"] < scorer.matches("naturel")["naturell"] < idf
    # a match counts less than the word itself
    doc = frozenset({"tropicana"})
    assert 0 < scorer.score([("tropican", 1.0)], doc) < scorer.score([("tropicana", 1.0)], doc)


@given(st.frozensets(words, max_size=30), words)
def test_matches_agree_with_brute_force(vocab: frozenset[str], token: str) -> None:
    scorer = TextScorer({w: 1 for w in vocab}, n_docs=50, scale=6.0)
    expected = {
        w
        for w in vocab
        if w != token
        and (
            (min(len(w), len(token)) >= 4 and (w.startswith(token) or token.startswith(w)))
            or (len(w) >= 5 and w in token[1:])
            or (min(len(w), len(token)) >= 5 and fuzz.ratio(w, token) >= 80)
        )
    }
    assert set(scorer.matches(token)) == expected


# -- FTS5 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([], None),
        ([""], None),
        (["arla", "milk"], '"arla"* OR "milk"*'),
        (["ko", "arla", "ko"], '"ko" OR "arla"*'),
        (['a"b'], '"a""b"'),
        (['x" OR "y'], '"x"" OR ""y"*'),
        (["oat\x00ly"], '"oatly"*'),  # NUL would end the string early
    ],
)
def test_fts_match_expression(tokens: list[str], expected: str | None) -> None:
    assert fts_match_expression(tokens) == expected


@pytest.fixture
def fts() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, tokenize='unicode61 remove_diacritics 2')")
    db.executemany(
        "INSERT INTO docs(rowid, title) VALUES (?, ?)",
        [(1, "Arla Ko Mellanmjölk"), (2, "Oatly Havredryck Barista"), (3, "Arlagårdar Smör")],
    )
    return db


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("ARLA", {1, 3}),  # prefix star reaches Arlagårdar
        ("ko", {1}),  # short tokens match whole words only
        ("oatly smor", {2, 3}),
        ("Mellanmjölk", {1}),
        ("banana", set()),
    ],
)
def test_fts_round_trip(fts: sqlite3.Connection, text: str, rows: set[int]) -> None:
    expression = fts_match_expression(tokenize(text))
    assert expression is not None
    found = {r for (r,) in fts.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expression,))}
    assert found == rows


@settings(max_examples=200)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), max_size=5))
def test_fts_expression_never_breaks_sqlite(tokens: list[str]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title)")
    db.execute("INSERT INTO docs(title) VALUES ('oatly')")
    expression = fts_match_expression(tokens)
    if expression is not None:
        db.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expression,)).fetchall()
