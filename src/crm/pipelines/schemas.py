from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from pydantic import Field, field_validator

from crm.core.schemas import InputModel, ReadModel
from crm.models import Pipeline, PipelineStage

#: Stage keys are what deals and the funnel refer to: short, lower case, stable.
STAGE_KEY_PATTERN = r"^[a-z0-9][a-z0-9_]*$"
MAX_STAGES = 100

StageKey = Annotated[
    str, Field(min_length=1, max_length=50, pattern=STAGE_KEY_PATTERN, examples=["qualification"])
]
StageName = Annotated[str, Field(min_length=1, max_length=200)]
PipelineName = Annotated[str, Field(min_length=1, max_length=200)]
Position = Annotated[
    int, Field(ge=0, le=MAX_STAGES, strict=True, description="0-based place in the pipeline's order")
]


class StageIn(InputModel):
    """An initial stage of a new pipeline; stages are ordered as listed."""

    key: StageKey
    name: StageName


class StageCreate(InputModel):
    key: StageKey
    name: StageName
    position: Position | None = Field(
        default=None, description="Where to insert it (0 = first); default last"
    )


class StageUpdate(InputModel):
    """Rename, move (`position`) or archive/unarchive a stage; the key never changes."""

    name: StageName | None = None
    position: Position | None = None
    is_archived: bool | None = Field(default=None, strict=True)


class PipelineCreate(InputModel):
    name: PipelineName
    is_default: bool = Field(
        default=False, strict=True, description="Make it the organization's default pipeline"
    )
    stages: list[StageIn] = Field(default_factory=list, max_length=MAX_STAGES)

    @field_validator("stages")
    @classmethod
    def keys_unique(cls, stages: list[StageIn]) -> list[StageIn]:
        keys = [s.key for s in stages]
        if len(set(keys)) != len(keys):
            raise ValueError("stage keys must be unique within a pipeline")
        return stages


class PipelineUpdate(InputModel):
    """PATCH: rename and/or make it the default (`is_default: true`; the previous default stops being one)."""

    name: PipelineName | None = None
    is_default: bool | None = Field(default=None, strict=True)


class StageRead(ReadModel):
    key: str
    name: str
    position: int
    is_archived: bool


class PipelineRead(ReadModel):
    id: int
    name: str
    is_default: bool
    stages: list[StageRead]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(cls, pipeline: Pipeline, stages: Sequence[PipelineStage]) -> PipelineRead:
        return cls(
            id=pipeline.id,
            name=pipeline.name,
            is_default=pipeline.is_default,
            stages=[StageRead.model_validate(s) for s in sorted(stages, key=lambda s: (s.position, s.id))],
            version=pipeline.version,
            created_at=pipeline.created_at,
            updated_at=pipeline.updated_at,
        )
