"""The fast CSV reader (Arrow, one record a line) and the careful one read the same files the
same way, and the careful one takes every file the fast one cannot number line by line."""
import pytest

import identifiable_zone.sources as sources

BODIES = {
    "quoted, doubled quotes, padding, accents": (
        'id,name,code\n"1","O\'Brien ""Jr""","  A "\n2,  Zoë ,\n"3","",B\n'),
    "CRLF line ends": "id,name,code\r\n1,Ann,A\r\n2,Bob,B\r\n",
    "no line end after the last record": "id,name,code\n1,Ann,A\n2,Bob,B",
    "a quoted line break": 'id,name,code\n1,"Ann\nSmith",A\n2,Bob,B\n',
    "a blank line": "id,name,code\n1,Ann,A\n\n2,Bob,B\n",
    "a whitespace-only line": "id,name,code\n1,Ann,A\n   \n2,Bob,B\n",
    "a repeated header name": "id,name,name\n1,Ann,A\n",
    "an empty header name": "id,,code\n1,Ann,A\n",
}


def _careful(path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(sources, "_read_csv_arrow", lambda text, delimiter: None)
        return sources._read_table(path)


@pytest.mark.parametrize("case", [c for c in BODIES if c != "a repeated header name"])  # refused: below
def test_fast_and_careful_readers_agree(tmp_path, monkeypatch, case):
    path = tmp_path / "x.csv"
    path.write_bytes(BODIES[case].encode("utf-8"))
    fast_df, _, fast_lines = sources._read_table(path)
    slow_df, _, slow_lines = _careful(path, monkeypatch)
    assert list(fast_df.columns) == list(slow_df.columns)
    assert fast_df.equals(slow_df)
    assert fast_lines == slow_lines


def test_fast_reader_declines_what_it_cannot_number():
    for case in ("a quoted line break", "a blank line", "a whitespace-only line", "a repeated header name",
                 "an empty header name"):
        assert sources._read_csv_arrow(BODIES[case], ",") is None, case
    df, lines = sources._read_csv_arrow(BODIES["CRLF line ends"], ",")
    assert lines == [2, 3] and df["name"].tolist() == ["Ann", "Bob"]
    df, _ = sources._read_csv_arrow(BODIES["quoted, doubled quotes, padding, accents"], ",")
    assert df["name"].tolist() == ['O\'Brien "Jr"', "Zoë", None]
    assert df["code"].tolist() == ["A", None, "B"]


def test_repeated_header_name_is_refused_by_both_readers(tmp_path, monkeypatch):
    """Which of two columns of one name would be read? Neither: the file is refused."""
    path = tmp_path / "x.csv"
    path.write_bytes(BODIES["a repeated header name"].encode("utf-8"))
    for read in (sources._read_table, lambda p: _careful(p, monkeypatch)):
        with pytest.raises(sources.ExtractUnusable, match=r"^x \(x\.csv\): rule columns_unique failed: column name "
                                                          r"appears twice in the header$"):
            read(path)


def test_short_row_still_refused_with_its_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('"id","name","code"\n"1","Ann","A"\n"2","Bob"\n"3","Cy","C"\n')
    with pytest.raises(sources.ExtractUnusable, match="csv_shape failed at line 3"):
        sources._read_table(path)
