"""Identities (NHS number, names, date of birth, postcode) and the faults real extracts carry."""
from __future__ import annotations

import numpy as np
import pandas as pd

MOD11_WEIGHTS = np.arange(10, 1, -1)

MALE_NAMES = """OLIVER GEORGE HARRY JACK JACOB NOAH CHARLIE MUHAMMAD THOMAS OSCAR WILLIAM JAMES
HENRY LEO ALFIE JOSHUA FREDDIE ARCHIE ETHAN ISAAC ALEXANDER JOSEPH EDWARD SAMUEL MAX DANIEL
ARTHUR LUCAS MOHAMMED LOGAN THEO HARRISON BENJAMIN MASON SEBASTIAN FINLEY ADAM DYLAN ZACHARY
RILEY TEDDY DAVID TOBY JAKE LOUIS ELIJAH REUBEN MATTHEW JOHN MICHAEL PAUL ANDREW PETER ROBERT
RICHARD STEPHEN MARK ANTHONY CHRISTOPHER KEVIN GARY IAN NEIL SIMON STUART TREVOR BARRY KEITH
ALAN BRIAN COLIN DEREK GRAHAM KENNETH RAYMOND RONALD TERENCE DENNIS FRANK GORDON PATRICK""".split()
FEMALE_NAMES = """OLIVIA AMELIA ISLA AVA EMILY ISABELLA MIA POPPY ELLA LILY SOPHIA GRACE EVIE
SCARLETT RUBY CHLOE ISABELLE DAISY FREYA PHOEBE FLORENCE ALICE JESSICA SIENNA MATILDA EVELYN
ELIZABETH ANNA SOPHIE HANNAH SARAH MARGARET SUSAN PATRICIA JENNIFER LINDA BARBARA KAREN
JULIE HELEN CAROL DEBORAH JACQUELINE GILLIAN ANGELA LORRAINE TRACEY JOANNE NICOLA REBECCA
EMMA LAURA CLAIRE RACHEL VICTORIA SAMANTHA GEMMA AMY KATHERINE CATHERINE CHRISTINE JEAN
DOROTHY JOAN IRENE DOREEN SHEILA BRENDA VALERIE PAULINE MAUREEN JANET SANDRA WENDY AISHA
FATIMA PRIYA""".split()
SURNAMES = """SMITH JONES TAYLOR BROWN WILLIAMS WILSON JOHNSON DAVIES PATEL ROBINSON WRIGHT
THOMPSON EVANS WALKER WHITE ROBERTS GREEN HALL THOMAS CLARKE JACKSON WOOD HARRIS EDWARDS
TURNER MARTIN COOPER HILL WARD HUGHES MOORE CLARK KING HARRISON LEWIS BAKER LEE ALLEN MORRIS
KHAN SCOTT WATSON DAVIS PARKER JAMES BENNETT YOUNG PHILLIPS RICHARDSON MITCHELL BAILEY
CARTER COOK SINGH SHAW BELL COLLINS MORGAN KELLY BEGUM MILLER COX HUSSAIN MARSHALL SIMPSON
PRICE ANDERSON ADAMS WILKINSON ALI WARD CHAPMAN MATTHEWS WEBB ELLIS MASON HUNT POWELL OWEN
HOLMES PALMER BARNES KNIGHT LLOYD BUTLER RUSSELL BARKER FISHER STEVENS JENKINS MURPHY DIXON
GRAHAM ATKINSON HUSSAIN OBRIEN OCONNOR SUTCLIFFE HAIGH BRAITHWAITE ACKROYD HOLROYD SHACKLETON
GREENWOOD FIRTH CROWTHER MIDGLEY PICKLES RAMSDEN SUGDEN AKHTAR AHMED IQBAL MAHMOOD""".split()
SURNAMES = list(dict.fromkeys(SURNAMES))
NICKNAMES = {
    "WILLIAM": "BILL", "ROBERT": "BOB", "RICHARD": "DICK", "JAMES": "JIM", "JOSEPH": "JOE",
    "THOMAS": "TOM", "MICHAEL": "MIKE", "ANTHONY": "TONY", "CHRISTOPHER": "CHRIS",
    "ALEXANDER": "ALEX", "DANIEL": "DAN", "MATTHEW": "MATT", "SAMUEL": "SAM", "EDWARD": "TED",
    "BENJAMIN": "BEN", "STEPHEN": "STEVE", "ANDREW": "ANDY", "PETER": "PETE", "DAVID": "DAVE",
    "KENNETH": "KEN", "RONALD": "RON", "TERENCE": "TERRY", "PATRICK": "PAT", "ELIZABETH": "LIZ",
    "MARGARET": "MAGGIE", "SUSAN": "SUE", "PATRICIA": "PAT", "JENNIFER": "JENNY",
    "KATHERINE": "KATE", "CATHERINE": "CATH", "VICTORIA": "VICKY", "SAMANTHA": "SAM",
    "REBECCA": "BECKY", "DEBORAH": "DEBBIE", "CHRISTINE": "CHRIS", "JACQUELINE": "JACKIE",
    "GILLIAN": "GILL", "NICOLA": "NICKY", "ISABELLA": "BELLA", "FLORENCE": "FLO",
    "DOROTHY": "DOT", "VALERIE": "VAL", "PAULINE": "PAULA", "JOHN": "JACK", "HENRY": "HARRY",
}


def mod11_check_digit(first9: np.ndarray) -> np.ndarray:
    """Check digit per row of an (n, 9) digit array; 10 marks a number that cannot be valid."""
    check = 11 - (first9 @ MOD11_WEIGHTS) % 11
    return np.where(check == 11, 0, check)


def digits_to_str(digits: np.ndarray) -> np.ndarray:
    """(n, 10) digits -> array of 10-character strings."""
    return digits.astype(np.uint8).view(np.uint8).__add__(ord("0")).view("S1").reshape(len(digits), -1) \
        .view(f"S{digits.shape[1]}").ravel().astype(str)


def valid_nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct valid NHS numbers (as strings) in the 4xx-7xx range used for England."""
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n:
        need = int((n - len(keys)) * 1.15) + 16
        first9 = rng.integers(0, 10, size=(need, 9))
        first9[:, 0] = rng.integers(4, 8, size=need)
        check = mod11_check_digit(first9)
        ok = check != 10
        cand = np.column_stack([first9[ok], check[ok]]) @ (10 ** np.arange(9, -1, -1))
        # keep the first occurrence of each new number, in the order drawn
        _, first = np.unique(cand, return_index=True)
        cand = cand[np.sort(first)]
        keys = np.r_[keys, cand[~np.isin(cand, keys)]]
    return np.char.zfill(keys[:n].astype(str), 10)


def invalidate_nhs_numbers(rng: np.random.Generator, numbers: np.ndarray) -> np.ndarray:
    """Keying errors that fail Modulus 11: the check digit no longer matches digits 1-9."""
    if len(numbers) == 0:
        return numbers
    digits = np.frombuffer("".join(numbers).encode(), dtype=np.uint8).reshape(-1, 10) - ord("0")
    digits = digits.astype(np.int64)
    good = mod11_check_digit(digits[:, :9])
    wrong = (good + rng.integers(1, 10, size=len(digits))) % 10
    digits[:, 9] = wrong
    return digits_to_str(digits)


def nhs_number_is_valid(numbers: np.ndarray) -> np.ndarray:
    """Vectorised Modulus 11 check on strings; anything not exactly 10 digits is invalid."""
    s = np.asarray(numbers, dtype=object)
    is_10 = np.array([isinstance(x, str) and len(x) == 10 and x.isdigit() for x in s])
    result = np.zeros(len(s), dtype=bool)
    if is_10.any():
        d = np.frombuffer("".join(s[is_10]).encode(), dtype=np.uint8).reshape(-1, 10).astype(np.int64) - ord("0")
        check = mod11_check_digit(d[:, :9])
        result[is_10] = (check != 10) & (check == d[:, 9])
    return result


TYPO_LETTERS = np.array(list("ABCDEFGHIJKLMNOPRSTUVWY"))


def typo(rng, names: np.ndarray) -> np.ndarray:
    """One keying error per name: a substituted, dropped or doubled letter, or two letters
    swapped (vectorised over a byte matrix: this runs for millions of records).

    ``rng``: a numpy Generator or a ``streams.Draws`` view of ``len(names)`` values."""
    k = len(names)
    kinds = rng.integers(0, 4, size=k)
    pos_draw = rng.random(size=k)
    subs = rng.choice(TYPO_LETTERS, size=k)
    if k == 0:
        return np.array([], dtype=object)
    raw = np.asarray(names, dtype=object).astype("S")
    width = raw.dtype.itemsize + 1
    src = np.frombuffer(raw.astype(f"S{width}").tobytes(), dtype=np.uint8).reshape(k, width)
    length = np.char.str_len(raw).astype(np.int64)
    short = length < 3
    i = 1 + (pos_draw * np.maximum(length - 2, 0)).astype(np.int64)  # keep the first letter, as most typos do
    i = np.where(short, length, i)
    j = np.arange(width)[None, :]
    ii = i[:, None]
    take = np.broadcast_to(j, (k, width)).copy()  # output position j takes source letter take[j]
    drop = (kinds == 1) | ((kinds == 3) & (i + 1 >= length))  # a swap at the last letter drops it
    take = np.where(drop[:, None] & (j >= ii), j + 1, take)
    double = (kinds == 2) & ~short
    take = np.where(double[:, None] & (j > ii), j - 1, take)
    swap = (kinds == 3) & (i + 1 < length)
    take = np.where(swap[:, None] & (j == ii), j + 1, take)
    take = np.where(swap[:, None] & (j == ii + 1), j - 1, take)
    out = np.take_along_axis(src, np.minimum(take, width - 1), axis=1)
    put_sub = (kinds == 0) | short  # a substitution, or a letter appended to a short name
    rows = np.flatnonzero(put_sub)
    out[rows, i[rows]] = np.frombuffer(subs[rows].astype("S1").tobytes(), dtype=np.uint8)
    new_len = length + np.where(short | double, 1, 0) - np.where(drop & ~short, 1, 0)
    out[j >= new_len[:, None]] = 0
    return out.view(f"S{width}").ravel().astype(str).astype(object)


def nickname(names: np.ndarray) -> np.ndarray:
    s = pd.Series(np.asarray(names, dtype=object), dtype=object)
    return s.map(NICKNAMES).fillna(s).to_numpy(dtype=object)


def make_postcodes(rng: np.random.Generator, n: int, area: str) -> np.ndarray:
    """n distinct well-formed postcodes in one postal area, e.g. 'HX12 3AB'."""
    inward_letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    codes: set = set()
    out = []
    while len(out) < n:
        district = rng.integers(1, 30)
        code = f"{area}{district} {rng.integers(1, 10)}{rng.choice(inward_letters)}{rng.choice(inward_letters)}"
        if code not in codes:
            codes.add(code)
            out.append(code)
    return np.array(out, dtype=object)
