import pandas as pd

from identifiable_zone import normalise as nz


def test_mod11_known_valid_and_invalid():
    s = pd.Series(["9434765919", "943 476 5919", "943-476-5919", "9434765918", "1234567890",
                   "943476591", "94347659190", "abcdefghij", None])
    assert nz.nhs_number_is_valid(s).tolist() == [True, True, True, False, False,
                                                   False, False, False, False]


def test_mod11_check_digit_eleven_means_zero_and_ten_means_invalid():
    # 401023213: weights sum = 4*10+0*9+1*8+0*7+2*6+3*5+2*4+1*3+3*2 = 92; 92 % 11 = 4 -> check 7
    assert nz.nhs_number_is_valid(pd.Series(["4010232137"])).tolist() == [True]
    # 100000001: sum = 10 + 2 = 12; 12 % 11 = 1 -> check 10 -> no valid number
    assert not nz.nhs_number_is_valid(pd.Series([f"100000001{d}" for d in range(10)])).any()
    # 000000000: sum 0 -> check 11 -> 0, so 0000000000 is (formally) valid
    assert nz.nhs_number_is_valid(pd.Series(["0000000000", "0000000001"])).tolist() == [True, False]
    assert nz.valid_nhs_or_none(pd.Series(["943 476 5919", "9434765918"])).tolist() == ["9434765919", None]


def test_names():
    s = pd.Series(["  José  O'Brien", "smith-jones", "Ælfric", "Søren", "..", None, "anne\tmarie"])
    assert nz.normalise_name(s).tolist() == ["JOSE OBRIEN", "SMITHJONES", "AELFRIC", "SOREN", None, None,
                                             "ANNE MARIE"]
    assert nz.normalise_name(pd.Series(["Zoë"])).tolist() == ["ZOE"]


def test_dates_several_formats_and_invalid():
    s = pd.Series(["2020-01-31", "31/01/2020", "20200131", "2020-02-30", "31-01-2020", "", None,
                   "3/4/2001", "2020-01-31 00:00:00"])
    iso = nz.date_to_iso(nz.parse_date(s)).tolist()
    assert iso == ["2020-01-31", "2020-01-31", "2020-01-31", None, None, None, None,
                   "2001-04-03", "2020-01-31"]


def test_day_month_swap():
    d = nz.parse_date(pd.Series(["2001-04-03", "2001-01-31", None]))
    assert nz.date_to_iso(nz.swap_day_month(d)).tolist() == ["2001-03-04", None, None]


def test_sex_codes():
    s = pd.Series(["M", "f", "1", "2", "9", "X", "U", "Q", None])
    assert nz.normalise_sex(s).tolist() == ["M", "F", "M", "F", "U", "U", "U", None, None]


def test_postcodes():
    s = pd.Series(["hx1  2ab", "SW1A1AA", " b1 1aa ", "not a postcode", None])
    pc = nz.normalise_postcode(s)
    assert pc.tolist() == ["HX1 2AB", "SW1A 1AA", "B1 1AA", None, None]
    assert nz.postcode_outward(pc).tolist() == ["HX1", "SW1A", "B1", None, None]
    # the shape linkage takes for a UK postcode (link.postcodes_are_uk) is what normalising gives
    assert pc.dropna().str.fullmatch(nz.NORMALISED_UK_POSTCODE).all()
    assert not any(nz.NORMALISED_UK_POSTCODE.fullmatch(v) for v in ("HX12AB", "hx1 2ab", "HX1  2AB", "75001"))
