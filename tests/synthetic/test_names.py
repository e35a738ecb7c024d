"""The name model: a real population's frequency structure, so name blocking stays near-linear."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from synthetic import names as nm
from synthetic.generate import generate
from synthetic.identifiers import FEMALE_NAMES, MALE_NAMES, NICKNAMES, SURNAMES, nickname, typo
from synthetic.params import SynthParams


def _people(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    return pd.DataFrame({"sex": sex, "forename": nm.pick_forenames(sex, rng.random(n)),
                         "surname": nm.pick(nm.surname_universe(), rng.random(n))})


def _pairs(df: pd.DataFrame, keys: list[str]) -> int:
    """Candidate pairs of a blocking rule on keys: sum over blocks of size * (size - 1) / 2."""
    sizes = df.groupby(keys, observed=True).size().to_numpy(dtype=np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def test_surnames_have_the_head_and_long_tail_of_england_and_wales():
    people = _people(200_000)
    share = people["surname"].value_counts(normalize=True)
    assert share.index[0] == "SMITH" and 0.010 < share.iloc[0] < 0.014  # E&W: about 1.2%
    assert 0.050 < share.iloc[:10].sum() < 0.065  # E&W: the ten commonest about 5-6%
    assert 30_000 < len(share) < 45_000  # tens of thousands of surnames among 200,000 people
    singletons = (people["surname"].value_counts() == 1).sum()
    assert singletons > 0.3 * len(share)  # a long tail: many surnames held by one person
    # distinct surnames keep growing with the population (expected at 2M: tens of thousands more)
    assert people["surname"].iloc[:20_000].nunique() < 0.4 * len(share)
    assert 60_000 < nm.expected_distinct(nm.surname_universe(), 2_000_000) < 150_000


def test_forenames_per_sex_have_thousands_of_names_and_a_few_percent_at_the_top():
    people = _people(200_000)
    for sex, head in (("F", FEMALE_NAMES), ("M", MALE_NAMES)):
        fore = people.loc[people["sex"] == sex, "forename"].value_counts(normalize=True)
        assert fore.index[0] == head[0] and 0.02 < fore.iloc[0] < 0.04
        assert len(fore) > 5_000
        assert set(head) <= set(nm.forename_universe(sex)[0])  # real names keep the top ranks
    # sexes do not share composed names, and the namesakes' stand-in forenames are never drawn
    f, m = set(nm.forename_universe("F")[0]), set(nm.forename_universe("M")[0])
    assert not (f & m) and not ((f | m) & nm.RESERVED_FORENAMES)


def test_name_lists_are_fixed_distinct_and_plain_letters():
    names, cdf = nm.surname_universe()
    assert len(set(names)) == len(names) == nm.SURNAME_LAW["universe"]
    assert list(names[: len(SURNAMES)]) == SURNAMES
    assert all(re.fullmatch(r"[A-Z]{2,14}", x) for x in names)
    assert not any(re.search(r"(.)\1\1", x) for x in names)
    assert np.all(np.diff(cdf) >= 0) and cdf[-1] == 1.0
    for universe in (nm.surname_universe(), nm.forename_universe("F"), nm.forename_universe("M")):
        share = np.diff(universe[1], prepend=0.0)
        assert np.all(np.diff(share) <= 1e-15)  # commonest first: the head joins the tail from above
    with pytest.raises(ValueError, match="sex must be"):
        nm.forename_universe("U")


def test_forename_surname_blocking_pairs_grow_near_linearly_not_quadratically():
    # Among distinct people, pairs sharing sex, forename and surname are N^2 * sum p_f^2 * sum p_s^2
    # / 4: about 0.1 per person at 100,000 (the 112-surname lists gave 45 M, 450 per person).
    small, large = _people(20_000), _people(100_000)
    keys = ["sex", "forename", "surname"]
    p_small, p_large = _pairs(small, keys), _pairs(large, keys)
    assert p_large < 0.25 * len(large)
    assert p_small < 0.06 * len(small)
    # with the date of birth too there is next to nothing left
    large["dob"] = np.random.default_rng(9).integers(0, 365 * 90, len(large))
    assert _pairs(large, keys + ["dob"]) < 10


@pytest.fixture(scope="module")
def record_pairs(tmp_path_factory):
    """Forename + surname blocking pairs over the distinct identity tuples of every person
    source (as linkage sees them), at 2,500 and 5,000 people."""
    out = {}
    for n in (2_500, 5_000):
        d = tmp_path_factory.mktemp(f"pairs{n}")
        generate(SynthParams(persons=n, seed=4), d, fmt="parquet")
        cols = {"gp_patients": ("NHSNumber", "Forename", "Surname", "DateOfBirth", "Postcode"),
                "iapt_ids001_mpi": ("NHSNumber", "PersonGivenName", "PersonFamilyName", "PersonBirthDate", "Postcode")}
        for s in ("ecds", "apc", "opa"):
            cols[s] = ("NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Postcode")
        tuples = pd.concat([pd.read_parquet(d / "landing" / f"{s}.parquet", columns=list(c))
                           .set_axis(["nhs", "forename", "surname", "dob", "postcode"], axis=1)
                            for s, c in cols.items()]).drop_duplicates()
        out[n] = (_pairs(tuples, ["forename", "surname"]), len(tuples))
    return out


def test_record_blocking_pairs_double_when_the_population_doubles(record_pairs):
    (p1, _), (p2, t2) = record_pairs[2_500], record_pairs[5_000]
    # mostly the same person's records in several sources: linear (quadratic would be x4)
    assert 1.6 < p2 / p1 < 2.6, (p1, p2)
    assert p2 < 3 * t2


def test_nicknames_and_typos_still_work_on_the_new_names():
    assert nickname(np.array(["WILLIAM", "PATRICIA", "SHANNEL"], dtype=object)).tolist() == ["BILL", "PAT", "SHANNEL"]
    assert set(NICKNAMES) <= set(nm.forename_universe("F")[0]) | set(nm.forename_universe("M")[0])
    names = nm.pick(nm.surname_universe(), np.random.default_rng(1).random(5_000))
    out = typo(np.random.default_rng(2), names)
    assert (out != names).mean() > 0.9  # a doubled letter next to its twin, or a swap of twins, can look alike
    lens = np.array([len(a) - len(b) for a, b in zip(out, names)])
    assert set(np.unique(lens)) <= {-1, 0, 1}
    assert all(a[0] == b[0] for a, b in zip(out, names))  # the first letter is kept


def test_no_composed_name_is_an_ordinary_english_word():
    words = nm.ordinary_words()
    assert {"WARNING", "HEADING", "LATER", "LEADER"} <= words  # composed candidates seen in outputs
    composed = set(nm.surname_universe()[0][len(SURNAMES):])
    for sex, head in (("F", FEMALE_NAMES), ("M", MALE_NAMES)):
        composed |= set(nm.forename_universe(sex)[0][len(head):])
    assert not composed & words


def test_ordinary_words_file_is_what_the_dictionary_gives():
    from required_tools import require

    dictionary = require(nm.WORD_LIST_SOURCE.exists() and nm.WORD_LIST_SOURCE, "the word list", "wbritish")
    assert nm.words_among_candidates(dictionary) == sorted(nm.ordinary_words()), \
        "the composition rules changed: run `python -m synthetic.names` to rewrite ordinary_words.txt"
