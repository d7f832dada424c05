from webapp.outbox.routes import bp

__all__ = ["bp"]
