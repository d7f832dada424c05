"""The mail layer: IMAP/POP3/SMTP connections, sync, parsing and sending (no Flask here)."""
