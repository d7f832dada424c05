from webapp.oauth.routes import bp

__all__ = ["bp"]
