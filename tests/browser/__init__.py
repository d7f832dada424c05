"""Browser tests (Playwright + Debian chromium); run with -m browser or tests/browser."""
