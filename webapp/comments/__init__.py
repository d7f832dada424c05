from webapp.comments.routes import bp

__all__ = ["bp"]
