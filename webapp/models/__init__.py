"""SQLModel tables, one module per aggregate; importing this registers them all."""

from webapp.models.mailbox import Mailbox
from webapp.models.oauth import OAuthAuthorization
from webapp.models.template import EmailTemplate
from webapp.models.user import ApiToken, User

__all__ = ["ApiToken", "EmailTemplate", "Mailbox", "OAuthAuthorization", "User"]
