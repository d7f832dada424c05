"""Pure decisions on incoming mail: sender filter, hold, acknowledgement, challenge, ceiling.

Every function takes the facts as parameters (the caller reads the database) and
returns the decision with a reason for the fetch log. The loop guard comes first:
automated messages (mail.automation.automation_reason) never trigger an automatic mail,
and RateCeiling is the last backstop against a loop nobody foresaw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from webapp.services.validation import SenderRule

SenderDecision = Literal["allow", "block", "unknown"]
IntakeAction = Literal["filter", "hold", "accept"]

ACK_INTERVAL = timedelta(hours=1)  # at most one acknowledgement per sender and mailbox
CHALLENGES_PER_DAY = 1  # confirmation mails per sender per day


class Decision(NamedTuple):
    """Whether to send an automatic mail, and why (or why not)."""

    send: bool
    reason: str


@dataclass(frozen=True)
class RateCeiling:
    """At most `limit` automatic mails per sender and mailbox in `window` (odoo#66329)."""

    limit: int = 20
    window: timedelta = timedelta(hours=2)

    def window_start(self, now: datetime) -> datetime:
        """Count automatic mails sent at or after this time."""
        return now - self.window

    def reached(self, sent_in_window: int) -> bool:
        """True when no further automatic mail may go to this sender."""
        return over_ceiling(sent_in_window, self.limit)

    def describe(self, sent_in_window: int) -> str:
        hours = self.window.total_seconds() / 3600
        return (
            f"ceiling reached: {sent_in_window} automatic mails to this sender in the last "
            f"{hours:g} hours (limit {self.limit})"
        )


DEFAULT_CEILING = RateCeiling()


def over_ceiling(sent_in_window: int, ceiling: int = 20) -> bool:
    """True when `sent_in_window` automatic mails already reach the ceiling: send no more."""
    return sent_in_window >= ceiling


def sender_decision(
    rules: Iterable[SenderRule], address: str, known_contact: bool = False
) -> SenderDecision:
    """allow, block or unknown for a sender address under the Sender Email Address Filter.

    Block wins over allow. A known contact is allowed unless blocked. Otherwise a sender
    matching an allow rule is allowed, and everyone else is unknown: with allow rules,
    those matching none; without, everyone not blocked.
    """
    rules = list(rules)
    address = address.strip().lower()
    if address and any(r.action == "block" and r.matches(address) for r in rules):
        return "block"
    if known_contact:
        return "allow"
    if address and any(r.action == "allow" and r.matches(address) for r in rules):
        return "allow"
    return "unknown"


def intake_action(decision: SenderDecision, confirmation_on: bool) -> IntakeAction:
    """filter (keep in the log, create nothing), hold (await confirmation) or accept."""
    if decision == "block":
        return "filter"
    if decision == "unknown" and confirmation_on:
        return "hold"
    return "accept"


def should_auto_ack(
    *,
    enabled: bool,
    new_case: bool,
    sender: str,
    automation_reason: str | None,
    backlog: bool,
    last_ack_at: datetime | None,
    now: datetime,
    sent_in_window: int,
    already_acknowledged: bool = False,
    ceiling: RateCeiling = DEFAULT_CEILING,
) -> Decision:
    """Send the Auto Acknowledgement? Once per new case, at most hourly per sender and mailbox.

    last_ack_at: the last acknowledgement to this sender from this mailbox;
    sent_in_window: automatic mails to this sender from this mailbox since
    ceiling.window_start(now).
    """
    if not enabled:
        return Decision(False, "auto acknowledgement is off for this mailbox")
    if not new_case:
        return Decision(False, "the message did not open a new case")
    if already_acknowledged:
        return Decision(False, "this case was acknowledged already")
    refusal = _guard(sender, automation_reason, backlog, sent_in_window, ceiling)
    if refusal:
        return Decision(False, refusal)
    if last_ack_at is not None and now - last_ack_at < ACK_INTERVAL:
        return Decision(
            False, f"an acknowledgement went to this sender at {last_ack_at:%Y-%m-%d %H:%M} "
            "(at most one per hour)",
        )  # fmt: skip
    return Decision(True, f"new case from {sender}")


def should_challenge(
    *,
    enabled: bool,
    held: bool,
    sender: str,
    automation_reason: str | None,
    backlog: bool,
    challenges_today: int,
    sender_verified: bool,
    sent_in_window: int,
    ceiling: RateCeiling = DEFAULT_CEILING,
    verification_reason: str = "",
) -> Decision:
    """Send the confirmation mail for a held message? Otherwise it is held silently.

    challenges_today: confirmation mails to this sender (any mailbox) in the last day;
    sender_verified: mail.authresults.sender_verified for this message.
    Silence is the safe answer: a challenge to a forged sender is backscatter.
    """
    if not enabled:
        return Decision(False, "confirmation of unknown senders is off for this mailbox")
    if not held:
        return Decision(False, "the message is not held")
    refusal = _guard(sender, automation_reason, backlog, sent_in_window, ceiling)
    if refusal:
        return Decision(False, f"held silently: {refusal}")
    if challenges_today >= CHALLENGES_PER_DAY:
        return Decision(False, "held silently: this sender got a confirmation mail today already")
    if not sender_verified:
        why = f" ({verification_reason})" if verification_reason else ""
        return Decision(False, f"held silently: SPF/DKIM did not pass with DMARC alignment{why}")
    return Decision(True, f"confirmation mail to {sender}")


def _guard(
    sender: str,
    automation_reason: str | None,
    backlog: bool,
    sent_in_window: int,
    ceiling: RateCeiling,
) -> str | None:
    """Why no automatic mail may go to this sender at all, or None (RFC 3834 + ceiling)."""
    if not sender.strip():
        return "the message has no sender address"
    if automation_reason:
        return f"automated message ({automation_reason})"
    if backlog:
        return "the message was in the mailbox before fetching was turned on"
    if ceiling.reached(sent_in_window):
        return ceiling.describe(sent_in_window)
    return None
