"""matplotlib for files, not windows: the one place that picks its backend (Agg), shared by the
report's plots and the model card's confusion matrix. Imported only when a PNG is drawn."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
