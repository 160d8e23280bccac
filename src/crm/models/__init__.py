"""Every ORM model, imported so that `Base.metadata` knows all tables."""

from crm.core.models import Base
from crm.models.activity import Activity
from crm.models.alert import Alert
from crm.models.api_key import ApiKey
from crm.models.company import Company
from crm.models.contact import Contact
from crm.models.custom_field import CustomField
from crm.models.deal import Deal
from crm.models.deal_history import DealHistory
from crm.models.dictionary import District, Industry, SupportProgram, SupportProvider
from crm.models.idempotency_key import IdempotencyKey
from crm.models.import_job import ImportJob, ImportUpload
from crm.models.integration import Integration
from crm.models.inventory import (
    Product,
    ProductFolder,
    PurchaseDocument,
    PurchaseDocumentPosition,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
)
from crm.models.membership import Membership
from crm.models.notification import Notification
from crm.models.notification_preference import NotificationPreference
from crm.models.organization import Organization
from crm.models.organization_role import OrganizationRole
from crm.models.outbox_event import OutboxEvent
from crm.models.pipeline import Pipeline
from crm.models.pipeline_stage import PipelineStage
from crm.models.project import Project
from crm.models.project_member import ProjectMember
from crm.models.project_status_history import ProjectStatusHistory
from crm.models.rate_limit_counter import RateLimitCounter
from crm.models.refresh_token import RefreshToken
from crm.models.support_decision import SupportDecision
from crm.models.support_measure import SupportMeasure
from crm.models.sync_job import SyncCursor, SyncJob
from crm.models.task import Task
from crm.models.user import User
from crm.models.user_session import UserSession
from crm.models.webhook import Webhook
from crm.models.webhook_delivery import WebhookDelivery
from crm.models.webhook_event import WebhookEvent

__all__ = [
    "Activity",
    "Alert",
    "ApiKey",
    "Base",
    "Company",
    "Contact",
    "CustomField",
    "Deal",
    "DealHistory",
    "District",
    "IdempotencyKey",
    "ImportJob",
    "ImportUpload",
    "Industry",
    "Integration",
    "Membership",
    "Notification",
    "NotificationPreference",
    "Organization",
    "OrganizationRole",
    "OutboxEvent",
    "Pipeline",
    "PipelineStage",
    "Product",
    "ProductFolder",
    "Project",
    "ProjectMember",
    "ProjectStatusHistory",
    "PurchaseDocument",
    "PurchaseDocumentPosition",
    "RateLimitCounter",
    "RefreshToken",
    "SalesDocument",
    "SalesDocumentPosition",
    "StockLevel",
    "Store",
    "SupportDecision",
    "SupportMeasure",
    "SupportProgram",
    "SupportProvider",
    "SyncCursor",
    "SyncJob",
    "Task",
    "User",
    "UserSession",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
]
