from webapp.main.routes import bp

__all__ = ["bp"]
