from __future__ import annotations

from crm.core.errors import Conflict, Forbidden


class DealAmountZero(Conflict):
    code = "deal_amount_zero"

    def __init__(self) -> None:
        super().__init__("A deal cannot be won with amount 0; set its amount first")


class StageMoveBackForbidden(Forbidden):
    def __init__(self) -> None:
        super().__init__("Moving a deal back to an earlier stage needs the 'deals:move_back' permission")
