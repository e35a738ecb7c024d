"""Deterministic rules and spine collapse on hand-made frames (no splink training needed)."""
import pandas as pd

from identifiable_zone.link import best_matches, deterministic_links, spine_persons

SPINE = pd.DataFrame({
    "record_id": ["G1", "G2", "G3", "G4", "G5", "G6"],
    "nhs": ["9434765919", "9434765919", None, "4010232137", "4010232137", None],
    "dob": ["1980-02-03", "1980-02-03", "1970-01-01", "1990-05-06", "1950-01-01", None],
})


def test_spine_duplicates_collapse_on_valid_nhs_and_dob():
    p = spine_persons(SPINE).set_index("record_id")["person_key"]
    assert p["G1"] == p["G2"] == "nhs:9434765919"
    assert p["G3"] == "gp:G3" and p["G6"] == "gp:G6"
    # one NHS number on two different dates of birth: two persons, keys disambiguated by DOB
    assert p["G4"] != p["G5"] and p["G4"].startswith("nhs:4010232137|dob:")
    assert p.nunique() == 5


def test_deterministic_needs_nhs_and_dob_equal_or_swapped():
    persons = spine_persons(SPINE)
    tuples = pd.DataFrame({
        "tuple_id": ["t_exact", "t_swap", "t_wrong_dob", "t_no_nhs", "t_other_dob"],
        "nhs": ["9434765919", "9434765919", "9434765919", None, "4010232137"],
        "dob": ["1980-02-03", "1980-03-02", "1981-02-03", "1970-01-01", "1950-01-01"],
    })
    det = deterministic_links(tuples, SPINE, persons).set_index("tuple_id")["person_key"]
    assert det.to_dict() == {"t_exact": "nhs:9434765919", "t_swap": "nhs:9434765919",
                             "t_other_dob": "nhs:4010232137|dob:1950-01-01"}


def test_deterministic_without_dates_of_birth_needs_one_spine_person_per_nhs_number():
    spine = SPINE.drop(columns="dob")
    persons = spine_persons(spine)
    tuples = pd.DataFrame({"tuple_id": ["t_one", "t_none", "t_missing"],
                           "nhs": ["9434765919", "1111111111", None]})
    det = deterministic_links(tuples, spine, persons).set_index("tuple_id")["person_key"]
    assert det.to_dict() == {"t_one": "nhs:9434765919"}
    # two spine persons on one NHS number (4010232137 with two dates of birth): no link
    two = spine_persons(SPINE)
    det = deterministic_links(pd.DataFrame({"tuple_id": ["t"], "nhs": ["4010232137"]}), spine,
                              two.assign(record_id=SPINE["record_id"]))
    assert det.empty


def test_best_match_threshold_and_ties():
    persons = spine_persons(SPINE)
    pairs = pd.DataFrame({
        "tuple_id": ["a", "a", "b", "c", "c"],
        "record_id": ["G1", "G3", "G3", "G3", "G6"],
        "match_probability": [0.99, 0.5, 0.90, 0.97, 0.97],
    })
    best = best_matches(pairs, persons, 0.95).set_index("tuple_id")
    assert best.loc["a", "linked"] and best.loc["a", "person_key"] == "nhs:9434765919"
    assert not best.loc["b", "linked"]  # below threshold
    assert not best.loc["c", "linked"]  # two different persons tie
    # the spine record behind each best candidate (a clerical reviewer compares it) and the tie
    assert best.loc["a", "record_id"] == "G1" and best.loc["b", "record_id"] == "G3"
    assert best["tied"].to_dict() == {"a": False, "b": False, "c": True}
