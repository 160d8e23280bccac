"""Every ORM model, imported so that `Base.metadata` knows all tables."""

from crm.core.models import Base
from crm.models.api_key import ApiKey
from crm.models.membership import Membership
from crm.models.organization import Organization
from crm.models.rate_limit_counter import RateLimitCounter
from crm.models.user import User
from crm.models.user_session import UserSession

__all__ = ["ApiKey", "Base", "Membership", "Organization", "RateLimitCounter", "User", "UserSession"]
