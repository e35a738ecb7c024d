"""The data period of a run: the month of the latest recorded activity in the extracts,
checked against the period asked for (``LTCEVAL_PERIOD``) when one is given."""
from __future__ import annotations

from core.periods import period_of, requested_period
from core.settings import PERIOD_ENV

# Activity dates (contract names) that bound the study calendar, as in dbt's
# int_calendar_months_spanned_by_activity: the data period is the month of the latest of them.
ACTIVITY_DATES = {"ecds": "Arrival_Date", "apc": "Admission_Date", "opa": "APPTDATE",
                  "gp_appointments": "AppointmentDate", "iapt_ids201_care_contact": "CareContDate"}


class DataPeriodError(RuntimeError):
    """The data period asked for does not match the extracts (or cannot be told)."""


def derive_data_period(latest_by_table: dict, manifest: list) -> dict:
    """``{"period", "latest_activity_date", "period_source"}`` from the latest accepted
    activity date (ISO) of each table (``ACTIVITY_DATES``; None when it has none);
    ``manifest`` (the input files) names the files when the period asked for disagrees."""
    latest, where = None, None
    for table in ACTIVITY_DATES:
        m = latest_by_table.get(table)
        if m is not None and (latest is None or str(m) > latest):
            latest, where = str(m), table
    asked = requested_period()
    if latest is None:
        if asked is None:
            raise DataPeriodError("no activity dates in the extracts, so the data period cannot be told; "
                                  f"set {PERIOD_ENV}=YYYY-MM")
        return {"period": asked, "period_source": f"{PERIOD_ENV} (no activity dates in the extracts)",
                "latest_activity_date": None}
    derived = period_of(latest)
    if asked is not None and asked != derived:
        files = sorted({f["file"] for f in manifest if f["table"] == where})
        raise DataPeriodError(
            f"{PERIOD_ENV}={asked} but the extracts hold activity up to {latest} ({where}: "
            f"{', '.join(files[-3:])}); "
            + ("remove the later files or ask for that period" if derived > asked else
               f"the extracts for {asked} look missing from landing/"))
    return {"period": derived, "latest_activity_date": latest,
            "period_source": f"{PERIOD_ENV} (agrees with the extracts)" if asked else
            f"the extracts (latest activity date, {where})"}
