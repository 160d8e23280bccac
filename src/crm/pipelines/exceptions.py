from __future__ import annotations

from crm.core.errors import Conflict, NotFound, UnprocessableEntity


class StageNotFound(NotFound):
    detail = "Stage not found"


class StageInUse(Conflict):
    code = "stage_in_use"


class StageKeyTaken(Conflict):
    code, detail = "pipeline_stage_key_taken", "The pipeline already has a stage with this key"

    def __init__(self, key: str | None = None) -> None:
        super().__init__(None if key is None else f"The pipeline already has a stage with key {key!r}")


class TooManyStages(Conflict):
    code = "pipeline_stage_limit"


class PipelineInUse(Conflict):
    code = "pipeline_in_use"


class DefaultPipelineChanged(Conflict):
    code, detail = "pipeline_default_conflict", "The default pipeline changed meanwhile; retry"


class PipelineIsDefault(Conflict):
    code = "pipeline_is_default"


class PipelineHasNoStages(Conflict):
    code = "pipeline_has_no_stages"


class InvalidStage(UnprocessableEntity):
    code = "invalid_stage"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[{"loc": ["body", "stage"], "msg": detail, "type": "invalid_stage"}])


class PositionOutOfRange(UnprocessableEntity):
    def __init__(self, highest: int) -> None:
        detail = f"position must be between 0 and {highest}"
        super().__init__(
            detail, errors=[{"loc": ["body", "position"], "msg": detail, "type": "less_than_equal"}]
        )
