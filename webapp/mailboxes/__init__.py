from webapp.mailboxes.routes import bp

__all__ = ["bp"]
