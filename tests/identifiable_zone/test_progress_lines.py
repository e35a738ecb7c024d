"""Validation, linkage and pseudonymisation say how far they are, per source, as they go."""
import logging
import re

from core import progress
from core.linkage_tables import ALTERNATIVES, SCENARIOS
from idz_helpers import copy_landing, run_zone


def test_each_long_stage_reports_done_out_of_total_per_source(small_landing, tmp_path, caplog):
    out = copy_landing(small_landing, tmp_path)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER):
        paths, results = run_zone(out)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.LOGGER]
    tables = results["validate"]["tables"]

    validate = [m for m in lines if m.startswith("validate: ")]
    assert len(validate) == len(tables)  # one file per source here
    ecds = next(m for m in validate if m.startswith("validate: ecds "))
    assert re.fullmatch(rf"validate: ecds 1/1 files, {tables['ecds']['rows_in']:,} rows, [\d.]+ of [\d.]+ MiB "
                        rf"\(source \d+ of {len(tables)}\)", ecds)

    link = [m for m in lines if m.startswith("link: ")]
    records = results["link"]["spine_records"] + results["link"]["source_records"]
    assert f"5/5 sources, {records:,} of {records:,} records" in "\n".join(link)
    assert any("linked deterministically" in m for m in link) and any("EM round 2/2" in m for m in link)
    assert link[-1].startswith(f"link: {records:,} records linked")

    pseudo = [m for m in lines if m.startswith("pseudonymise: ")]
    # the source tables (the linkage sensitivity's two small tables are written after them, unreported)
    published = sum(t["rows"] for name, t in results["publish"]["tables"].items()
                    if name not in (ALTERNATIVES, SCENARIOS))
    written = [m for m in pseudo if " written, " in m]
    persons = results["publish"]["tables"]["person"]["rows"]
    assert written[0] == f"pseudonymise: person written, {persons:,} persons"
    last_rows = int(re.search(r"of ([\d,]+) rows", written[-1]).group(1).replace(",", ""))
    assert re.search(r"(\d+)/\1 tables, ([\d,]+) of \2 rows$", written[-1])
    assert last_rows == published - persons  # all but the person table
    assert len(written) == len(results["publish"]["tables"]) - 2  # all but the two linkage tables
