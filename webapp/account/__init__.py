from webapp.account.routes import bp

__all__ = ["bp"]
