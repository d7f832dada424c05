from webapp.cases.routes import bp

__all__ = ["bp"]
