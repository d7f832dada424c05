from webapp.api.routes import bp

__all__ = ["bp"]
