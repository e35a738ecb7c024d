"""``link_files`` (``ltceval link``) on two files the test builds: people outside the UK
(postcodes of another shape), dates of birth with transposed or mistyped digits (some no real
date), typos in names and free-text address fields. Real linkage, no mocks; floors stated."""
import numpy as np
import pandas as pd
import pytest

from identifiable_zone.link import choose_threshold, expected_quality, link_files, standardise_fields

SYLLABLES = ["ka", "ri", "mo", "ta", "len", "so", "vi", "dar", "ne", "lu", "ber", "gi", "han", "pe", "zor", "el",
             "ma", "tin", "ro", "sa", "quin", "do", "fa", "wen"]
STREET_TYPES = ["street", "road", "place", "crescent", "avenue", "court"]


def _word(rng, k):
    return "".join(rng.choice(SYLLABLES, size=k))


def _typo(rng, s: str) -> str:
    """One edit: a letter changed, dropped, doubled or two neighbours swapped."""
    if len(s) < 3:
        return s
    i = int(rng.integers(1, len(s) - 1))
    kind = int(rng.integers(4))
    if kind == 0:
        return s[:i] + str(rng.choice(list("aeioustrn"))) + s[i + 1:]
    if kind == 1:
        return s[:i] + s[i + 1:]
    if kind == 2:
        return s[:i] + s[i] + s[i:]
    return s[:i - 1] + s[i] + s[i - 1] + s[i + 1:]


def _transpose_digits(rng, d: str) -> str:
    """Two neighbouring digits of YYYYMMDD swapped (often no real date, e.g. 19870231 -> 19870213
    or 19871302)."""
    digits = [i for i in range(2, 7) if d[i] != d[i + 1]]
    if not digits:
        return d
    i = int(rng.choice(digits))
    return d[:i] + d[i + 1] + d[i] + d[i + 2:]


def make_files(n_people: int = 700, n_dups: int = 550, n_strangers: int = 100, seed: int = 3):
    """(left, right, true pairs): right = one record per person; left = a corrupted copy of
    ``n_dups`` of them plus ``n_strangers`` people not on the right. Postcodes are four digits
    (as in Australia); dates YYYYMMDD."""
    rng = np.random.default_rng(seed)
    forenames = [_word(rng, 2) for _ in range(120)]
    surnames = [_word(rng, 3) for _ in range(500)]
    localities = [_word(rng, 2) + " " + _word(rng, 1) for _ in range(150)]
    n = n_people + n_strangers
    people = pd.DataFrame({
        "given": rng.choice(forenames, size=n),
        "family": rng.choice(surnames, size=n),
        "born": pd.to_datetime(rng.integers(-18000, 15000, size=n), unit="D").strftime("%Y%m%d"),
        "zip": rng.integers(2000, 7000, size=n).astype(str),
        "street": [f"{_word(rng, 2)} {rng.choice(STREET_TYPES)}" for _ in range(n)],
        "town": rng.choice(localities, size=n),
        "state": rng.choice(["nsw", "vic", "qld", "wa", "sa", "tas"], size=n),
    })
    right = people.iloc[:n_people].assign(rid=[f"r{i}" for i in range(n_people)])
    dup_of = rng.choice(n_people, size=n_dups, replace=False)
    left = pd.concat([people.iloc[dup_of], people.iloc[n_people:]], ignore_index=True)
    left["lid"] = [f"l{i}" for i in range(len(left))]
    truth = {(f"l{i}", f"r{p}") for i, p in enumerate(dup_of)}
    # corruptions, at most two per duplicate: as on real forms
    for i in range(n_dups):
        for what in rng.choice(["given", "family", "born", "zip", "street", "town", "none"], size=2, replace=False):
            v = left.at[i, what] if what != "none" else None
            if what == "born":
                left.at[i, what] = _transpose_digits(rng, v)
            elif what == "zip":
                left.at[i, what] = v[:3] + str((int(v[3]) + 1) % 10)
            elif what != "none":
                left.at[i, what] = _typo(rng, v)
    return left, right, truth


FIELDS = {"forename": ("given", "given"), "surname": ("family", "family"), "date_of_birth": ("born", "born"),
          "postcode": ("zip", "zip")}
ADDRESS = {"street": ("street", "street"), "town": ("town", "town"), "state": ("state", "state")}


@pytest.fixture(scope="module")
def files():
    return make_files()


def _scores(pairs, truth):
    pred = set(zip(pairs["left_id"], pairs["right_id"]))
    tp = len(pred & truth)
    return tp / max(len(pred), 1), tp / len(truth)


def test_non_uk_postcodes_typo_dates_and_address_link_with_model_threshold(files):
    left, right, truth = files
    pairs, summary = link_files(left, right, "lid", "rid", FIELDS, ADDRESS)
    precision, recall = _scores(pairs, truth)
    assert precision >= 0.99, precision
    assert recall >= 0.95, recall
    th = summary["thresholds"]
    assert th["chosen_by"] == "model" and th["target_expected_precision"] == 0.999
    assert th["expected_precision"] >= 0.999 and 0 < th["expected_recall"] <= 1
    assert (pairs["match_probability"] >= th["match_probability"]).all()
    assert summary["model"]["postcodes"] == "any country"
    # dates of birth: the typo-aware levels are in the model
    assert "dob" in summary["model"]["comparisons"] and "x_street" in summary["model"]["comparisons"]
    # strangers (left records of people not on the right) stay unlinked
    strangers = set(left["lid"].iloc[-100:])
    assert len(strangers & set(pairs["left_id"])) <= 1


def test_postcodes_of_any_country_matter(files):
    """Without the postcode the same files link worse: the (non-UK) postcode is evidence, not
    dropped as it was when only UK shapes were kept."""
    left, right, truth = files
    with_pc, _ = link_files(left, right, "lid", "rid", FIELDS, threshold=0.5)
    without, _ = link_files(left, right, "lid", "rid", {k: v for k, v in FIELDS.items() if k != "postcode"},
                            threshold=0.5)
    assert _scores(with_pc, truth)[1] > _scores(without, truth)[1]


def test_threshold_from_the_model_is_below_0_95_when_the_model_says_so(files):
    """Names, date of birth and postcode only: the model is less sure of the typo-laden
    duplicates, and says that accepting some below 0.95 still keeps its expected precision."""
    left, right, truth = files
    scored, _ = link_files(left, right, "lid", "rid", FIELDS, threshold=0.01)
    best = scored.groupby("left_id")["match_probability"].max()
    chosen = choose_threshold(best)  # every link is probabilistic here (no NHS number)
    assert expected_quality(best, chosen)["expected_precision"] >= 0.999
    model_pairs, summary = link_files(left, right, "lid", "rid", FIELDS)
    th = summary["thresholds"]
    assert th["chosen_by"] == "model" and th["match_probability"] == pytest.approx(chosen)
    assert th["expected_precision"] >= 0.999
    assert chosen < 0.95
    given, given_summary = link_files(left, right, "lid", "rid", FIELDS, threshold=0.95)
    assert given_summary["thresholds"]["chosen_by"] == "given"
    assert (given["match_probability"] >= 0.95).all()
    (p_model, r_model), (p_given, r_given) = _scores(model_pairs, truth), _scores(given, truth)
    assert r_model > r_given and p_model >= 0.99


def test_one_to_one_links_each_record_at_most_once(files):
    left, right, truth = files
    pairs, summary = link_files(left, right, "lid", "rid", FIELDS, ADDRESS, one_to_one=True)
    assert summary["links"]["one_to_one"] is True
    assert pairs["left_id"].is_unique and pairs["right_id"].is_unique
    precision, recall = _scores(pairs, truth)
    assert precision >= 0.99 and recall >= 0.95
    # doubled left records: without one-to-one both copies link to the same right record
    doubled = pd.concat([left, left.head(50).assign(lid=lambda d: d["lid"] + "b")], ignore_index=True)
    many, _ = link_files(doubled, right, "lid", "rid", FIELDS, ADDRESS)
    one, _ = link_files(doubled, right, "lid", "rid", FIELDS, ADDRESS, one_to_one=True)
    assert not many["right_id"].is_unique
    assert one["right_id"].is_unique and one["left_id"].is_unique


def test_choose_threshold_is_the_lowest_keeping_expected_precision():
    p = np.r_[np.full(999, 1.0), 0.5, 0.2]
    # accepting the 0.5 candidate: mean (999 + 0.5) / 1000 >= 0.999; adding 0.2 falls below
    assert choose_threshold(p) == 0.5
    assert expected_quality(p, 0.5)["expected_precision"] >= 0.999
    assert choose_threshold(p, target=0.9) == 0.2
    assert choose_threshold(np.full(10, 0.9)) == 1.0  # nothing reaches the target: nothing probabilistic
    assert choose_threshold([]) == 1.0
    # ties: a threshold accepts every candidate at it
    ties = np.r_[np.full(998, 1.0), 0.4, 0.4]
    assert choose_threshold(ties) == 1.0


def test_any_country_standardisation_keeps_foreign_postcodes_and_mistyped_dates():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "pc": ["4011", "hx1  2ab", "1012 AB", None],
                       "dob": ["19871302", "1987-02-13", "13/02/1987", "unknown"]})
    uk_only = standardise_fields(df, "id", {"postcode": "pc", "date_of_birth": "dob"})
    anyc = standardise_fields(df, "id", {"postcode": "pc", "date_of_birth": "dob"}, any_country=True)
    assert uk_only["postcode"].tolist() == [None, "HX1 2AB", None, None]
    assert anyc["postcode"].tolist() == ["4011", "HX1 2AB", "1012AB", None]
    assert uk_only["dob"].tolist() == [None, "1987-02-13", "1987-02-13", None]
    # a mistyped date that is no real date stays comparable as text (Damerau-Levenshtein levels)
    assert anyc["dob"].tolist() == ["1987-13-02", "1987-02-13", "1987-02-13", None]


def test_guarded_damerau_levenshtein_level_agrees_with_duckdb_on_every_pair():
    """The bounded level decides exactly as damerau_levenshtein(l, r) <= k, run in DuckDB on
    every pair of strings with substitutions, transpositions, insertions, deletions and lengths
    apart; only the cost differs."""
    import duckdb

    from identifiable_zone.link import damerau_levenshtein_level

    values = ["1987-02-13", "1987-02-31", "1987-20-13", "1978-02-13", "1987-02-1", "1987-02-133", "1988-03-14",
              "4011", "4101", "4012", "401", "40111", "1104", "ab", "", "1012AB", "1012BA", "1021AB", "HX12AB"]
    pairs = pd.DataFrame([(a, b) for a in values for b in values], columns=["v_l", "v_r"])
    with duckdb.connect() as con:
        con.register("pairs", pairs)
        for k in (1, 2):
            level = damerau_levenshtein_level("v", k).get_comparison_level("duckdb").as_dict()
            got = con.sql(f"SELECT ({level['sql_condition']}) AS got, damerau_levenshtein(v_l, v_r) <= {k} AS want "
                          "FROM pairs").df()
            assert got["want"].sum() > len(values)  # near pairs exist, not only identical ones
            assert (got["got"] == got["want"]).all(), k
            assert level["label_for_charts"] == f"Damerau-Levenshtein distance of v <= {k}"
