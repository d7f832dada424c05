"""Outgoing mail: the outbox, its delivery over SMTP, and the automatic mails (acknowledgement,
confirmation, no-new-case notice)."""
