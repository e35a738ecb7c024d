"""Data periods: YYYY-MM checked, month ends right across years and leap years."""
import pytest

from core.errors import PublishError
from core.periods import parse_period, period_end, period_of, requested_period
from core.settings import PERIOD_ENV


@pytest.mark.parametrize("text", ["2024-3", "2024-13", "2024-00", "24-03", "2024/03", "", "2024-03-01"])
def test_malformed_periods_are_refused_with_the_form_expected(text):
    with pytest.raises(PublishError, match="data period must be YYYY-MM"):
        parse_period(text)


def test_period_of_a_date_and_the_last_day_of_a_period():
    assert parse_period(" 2024-03 ") == "2024-03"
    assert period_of("2024-03-31") == "2024-03"
    assert period_end("2024-02") == "2024-02-29" and period_end("2023-02") == "2023-02-28"
    assert period_end("2023-12") == "2023-12-31" and period_end("2024-04") == "2024-04-30"


def test_requested_period_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(PERIOD_ENV, raising=False)
    assert requested_period() is None
    monkeypatch.setenv(PERIOD_ENV, "2024-01")
    assert requested_period() == "2024-01"
    monkeypatch.setenv(PERIOD_ENV, "January")
    with pytest.raises(PublishError):
        requested_period()
