from webapp.users.routes import bp

__all__ = ["bp"]
