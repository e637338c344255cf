"""Williams Alligator: three smoothed moving averages of the median price, shifted forward.

``jaw[t] = SMMA(m, jaw_period)[t - jaw_shift]`` and likewise for teeth and lips, with
``m = (high + low) / 2``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cival.core.fields import WholeNumber

FAMILY = "trend_following"


class AlligatorParams(BaseModel):
    """Periods and forward shifts of the jaw, teeth and lips lines (in bars)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jaw_period: WholeNumber = Field(13, gt=0)
    jaw_shift: WholeNumber = Field(8, ge=0)
    teeth_period: WholeNumber = Field(8, gt=0)
    teeth_shift: WholeNumber = Field(5, ge=0)
    lips_period: WholeNumber = Field(5, gt=0)
    lips_shift: WholeNumber = Field(3, ge=0)
