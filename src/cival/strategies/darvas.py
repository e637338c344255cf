"""Darvas Box: a new high starts a box top; ``confirm`` bars without a higher high fix it,
``confirm`` bars without a lower low fix the bottom. Entries on closes above the box."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cival.core.fields import WholeNumber

FAMILY = "breakout"


class DarvasParams(BaseModel):
    """``lookback``: bars a new high must exceed; ``confirm``: bars that fix a top or bottom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: WholeNumber = Field(20, gt=0)
    confirm: WholeNumber = Field(3, gt=0)
