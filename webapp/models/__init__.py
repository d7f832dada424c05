"""SQLModel tables, one module per aggregate; importing this registers them all."""

from webapp.models.audit import AuditEvent
from webapp.models.case import (
    Attachment,
    Case,
    CaseEvent,
    CaseParticipant,
    Counter,
    Message,
    MessageMailbox,
)
from webapp.models.contact import Contact
from webapp.models.fetch import FetchCursor, FetchLease, FetchRun
from webapp.models.intake import ContactAlias, HeldMessage, SenderChallenge
from webapp.models.mailbox import Mailbox
from webapp.models.message import RawMessage, RawMessageBody
from webapp.models.oauth import OAuthAuthorization
from webapp.models.outbox import OutboxMessage
from webapp.models.session import InstallStep, SigninThrottle, UserSession
from webapp.models.task import Task, TaskEvent
from webapp.models.template import EmailTemplate
from webapp.models.user import ApiToken, User
from webapp.models.watch import Watcher, WatchLease

__all__ = [
    "ApiToken",
    "Attachment",
    "Case",
    "CaseParticipant",
    "Contact",
    "Counter",
    "EmailTemplate",
    "FetchCursor",
    "FetchLease",
    "FetchRun",
    "Mailbox",
    "Message",
    "OAuthAuthorization",
    "RawMessage",
    "RawMessageBody",
    "User",
]
__all__ += ["CaseEvent", "MessageMailbox"]
__all__ += ["Task", "TaskEvent"]
__all__ += ["ContactAlias", "HeldMessage", "SenderChallenge"]
__all__ += ["OutboxMessage"]
__all__ += ["AuditEvent", "InstallStep", "SigninThrottle", "UserSession"]
__all__ += ["WatchLease", "Watcher"]
