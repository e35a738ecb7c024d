import pandas as pd
import pytest

from evaluation.disclosure import (published_iapt_outcomes, rounded_percentage, suppress_count,
                                   suppress_counts, suppress_statistic, too_few_to_publish)


@pytest.mark.parametrize("n,expected", [
    (0, 0), (1, "*"), (5, "*"), (7, "*"), (8, 10), (10, 10), (12, 10), (12.0, 10), (13, 15),
    (17, 15), (18, 20), (22, 20), (23, 25), (1234, 1235), (1232, 1230),
])
def test_suppress_count(n, expected):
    assert suppress_count(n) == expected


def test_suppress_count_rejects_non_counts():
    with pytest.raises(ValueError):
        suppress_count(-1)
    with pytest.raises(ValueError):
        suppress_count(2.5)
    assert suppress_count(None) is None


def test_suppress_counts_frame_and_statistics():
    df = pd.DataFrame({"step": ["a", "b", "c"], "n": [0, 3, 101]})
    out = suppress_counts(df, ["n"])
    assert list(out["n"]) == [0, "*", 100]
    assert list(df["n"]) == [0, 3, 101]  # input untouched
    assert suppress_statistic(0.42, 5) == "*"
    assert suppress_statistic(0.42, 8) == 0.42
    assert rounded_percentage(52, 98) == pytest.approx(50.0)  # 50 of 100
    assert rounded_percentage(3, 98) == "*"


@pytest.mark.parametrize("n_treated,too_few", [(0, False), (1, True), (7, True), (8, False)])
def test_a_cohort_of_1_to_7_treated_people_is_not_published(n_treated, too_few):
    assert too_few_to_publish(n_treated) is too_few


def test_published_iapt_outcomes_percentages_come_from_rounded_counts():
    iapt = pd.DataFrame({"measure": ["Recovered", "Rare"], "n": [52, 3], "denominator": [98, 98]})
    out = published_iapt_outcomes(iapt)
    assert list(out["n"]) == [50, "*"] and list(out["denominator"]) == [100, 100]
    assert list(out["percent"]) == [pytest.approx(50.0), "*"]


def test_published_balance_means_do_not_give_the_count_away():
    from disclosure_checks import pinned_count

    from evaluation.disclosure import published_balance

    bal = pd.DataFrame({"covariate": ["recent_emergency_admissions"] * 2, "stage": ["after", "after"],
                        "mean_treated": [3 / 83, 3 / 83], "mean_control": [5 / 83, 0.0], "smd": [-0.1234567, 0.0],
                        "n_treated": [83, 5], "n_control": [83, 83]})
    pub = published_balance(bal)
    assert pinned_count(repr(3 / 83), 85) == 83  # what the unrounded table gave away
    assert pinned_count(str(float(pub.loc[0, "mean_treated"])), pub.loc[0, "n_treated"]) is None
    assert pinned_count(str(float(pub.loc[0, "mean_control"])), pub.loc[0, "n_control"]) is None
    assert pub.loc[1, "mean_treated"] == "*" and pub.loc[1, "n_treated"] == "*"  # 5 people
    assert pub.loc[0, "smd"] == -0.123
    # without the counts, three significant figures
    assert published_balance(bal.drop(columns=["n_treated", "n_control"])).loc[0, "mean_treated"] == 0.0361
