"""Figures as inline PNG data URIs: a report is one self-contained HTML file (no network, no
JavaScript), as an IG reviewer or a commissioner opens it."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fig_to_data_uri(fig) -> str:
    """Encode a figure as an inline PNG data URI (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
