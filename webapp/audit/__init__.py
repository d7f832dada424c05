from webapp.audit.routes import bp

__all__ = ["bp"]
