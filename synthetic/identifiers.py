"""Identities (NHS number, names, date of birth, postcode) and the faults real extracts carry."""
from __future__ import annotations

import numpy as np

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
    out = np.empty((0, 10), dtype=np.int64)
    seen: set = set()
    while len(out) < n:
        need = int((n - len(out)) * 1.15) + 16
        first9 = rng.integers(0, 10, size=(need, 9))
        first9[:, 0] = rng.integers(4, 8, size=need)
        check = mod11_check_digit(first9)
        ok = check != 10
        cand = np.column_stack([first9[ok], check[ok]])
        keys = cand @ (10 ** np.arange(9, -1, -1))
        _, first = np.unique(keys, return_index=True)
        cand, keys = cand[np.sort(first)], keys[np.sort(first)]
        fresh = np.array([k not in seen for k in keys.tolist()])
        seen.update(keys[fresh].tolist())
        out = np.vstack([out, cand[fresh]])
    return digits_to_str(out[:n])


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


def typo(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    """One keying error per name: a substituted, dropped or doubled letter, or two letters swapped."""
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTUVWY"))
    out = []
    kinds = rng.integers(0, 4, size=len(names))
    pos_draw = rng.random(len(names))
    subs = rng.choice(letters, size=len(names))
    for name, kind, p, sub in zip(names, kinds, pos_draw, subs):
        if len(name) < 3:
            out.append(name + sub)
            continue
        i = 1 + int(p * (len(name) - 2))  # keep the first letter, as most typos do
        if kind == 0:
            out.append(name[:i] + sub + name[i + 1:])
        elif kind == 1:
            out.append(name[:i] + name[i + 1:])
        elif kind == 2:
            out.append(name[:i] + name[i] + name[i:])
        else:
            out.append(name[:i] + name[i + 1] + name[i] + name[i + 2:] if i + 1 < len(name) else name[:-1])
    return np.array(out, dtype=object)


def nickname(names: np.ndarray) -> np.ndarray:
    return np.array([NICKNAMES.get(n, n) for n in names], dtype=object)


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
