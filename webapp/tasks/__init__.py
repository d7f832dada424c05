from webapp.tasks.routes import bp

__all__ = ["bp"]
