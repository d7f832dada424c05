"""Who may do what: the team's accounts, sign-in, sessions and the audit log."""
