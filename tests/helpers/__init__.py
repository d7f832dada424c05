"""Plain helpers for the tests (fixtures live in the conftest.py files).

- databases: migrate, a fresh PostgreSQL database, counting SQL statements
- messages: emails to deliver (plain, HTML, bounces, authenticated) and reading sent ones
- mailboxes: mailboxes straight in the database, fetching, the outbox worker
- rows: what the database holds after a step (cases, messages, raw rows, held, outbox)
- web: what the test client posts (CSRF tokens, the admin's login, the mailbox form, comments)
- oauth: an OAuth mailbox authorized through the forms and the test provider
- browser: Playwright steps shared by the browser tests
- proxy: a man in the middle that strips STARTTLS/STLS and records what the client sends
"""
