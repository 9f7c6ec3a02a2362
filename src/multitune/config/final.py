"""`final:` — retraining over seeds and the comparison report (issue 5 fills this)."""

from __future__ import annotations

from multitune.config._base import StrictModel


class FinalConfig(StrictModel):
    """The final stage."""
