"""What the design of a build was: the one-row ``mart_design`` table dbt writes from its vars
(contract section 4). The evaluation takes the selection window and the comparison design from
it rather than re-deriving them from the panel's labels or the pool's rows."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from core.contract import PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE


@dataclass(frozen=True)
class StudyDesign:
    """The design choices the evaluation needs; ``choices`` holds the whole ``mart_design`` row.
    The default (no ``mart_design``: a warehouse built elsewhere, or a generic panel) has no
    selection window: the whole year before the index is the comparison period."""

    selection_window_months: int = 0
    comparison_design: str | None = None
    choices: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "StudyDesign":
        if len(table) != 1:
            raise ValueError(f"mart_design has {len(table)} rows; it must have exactly one")
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[0].to_dict().items()}
        window = (row.get("panel_months_before"), row.get("panel_months_after"))
        if window != (PANEL_MONTHS_BEFORE, PANEL_MONTHS_AFTER):
            raise ValueError(f"mart_design: the panels were built for months -{window[0]}..{window[1]}; "
                             f"the evaluation contract is -{PANEL_MONTHS_BEFORE}..{PANEL_MONTHS_AFTER} "
                             "(core/contract.py; dbt receives it through core.dbt.dbt_vars)")
        w = int(row["selection_window_months"])
        if not 0 <= w < PANEL_MONTHS_BEFORE:
            raise ValueError(f"mart_design: selection_window_months {w} is not in 0..{PANEL_MONTHS_BEFORE - 1}")
        design = row.get("comparison_design")
        return cls(selection_window_months=w, comparison_design=str(design) if design else None, choices=row)

    @property
    def selection_months(self) -> tuple[int, ...]:
        """Relative months of the selection window (empty without one)."""
        return tuple(range(-self.selection_window_months, 0))

    @property
    def comparison_months(self) -> tuple[int, ...]:
        """Relative months of the DiD comparison (pre) period."""
        return tuple(range(-PANEL_MONTHS_BEFORE, -self.selection_window_months))
