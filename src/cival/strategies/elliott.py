"""Elliott Wave: a causal ZigZag finds waves 1 and 2; the entry is the wave-3 breakout."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cival.core.fields import FiniteFloat

FAMILY = "price_action"


class ElliottParams(BaseModel):
    """ZigZag threshold in percent, the accepted wave-2 retracement range, and the wave-3 target extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zigzag_pct: FiniteFloat = Field(5.0, gt=0, lt=100)
    min_retrace: FiniteFloat = Field(0.382, gt=0, lt=1)
    max_retrace: FiniteFloat = Field(0.786, gt=0, lt=1)
    target_ext: FiniteFloat = Field(1.618, gt=0)

    @model_validator(mode="after")
    def _retrace_range(self) -> ElliottParams:
        if self.min_retrace > self.max_retrace:
            raise ValueError(
                f"min_retrace ({self.min_retrace}) must not exceed max_retrace ({self.max_retrace})"
            )
        return self
