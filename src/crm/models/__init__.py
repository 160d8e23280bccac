"""Every ORM model, imported so that `Base.metadata` knows all tables."""

from crm.core.models import Base
from crm.models.activity import Activity
from crm.models.api_key import ApiKey
from crm.models.company import Company
from crm.models.contact import Contact
from crm.models.custom_field import CustomField
from crm.models.deal import Deal
from crm.models.deal_history import DealHistory
from crm.models.idempotency_key import IdempotencyKey
from crm.models.membership import Membership
from crm.models.organization import Organization
from crm.models.organization_role import OrganizationRole
from crm.models.pipeline import Pipeline
from crm.models.pipeline_stage import PipelineStage
from crm.models.rate_limit_counter import RateLimitCounter
from crm.models.task import Task
from crm.models.user import User
from crm.models.user_session import UserSession

__all__ = [
    "Activity",
    "ApiKey",
    "Base",
    "Company",
    "Contact",
    "CustomField",
    "Deal",
    "DealHistory",
    "IdempotencyKey",
    "Membership",
    "Organization",
    "OrganizationRole",
    "Pipeline",
    "PipelineStage",
    "RateLimitCounter",
    "Task",
    "User",
    "UserSession",
]
