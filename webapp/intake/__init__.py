from webapp.intake.routes import bp

__all__ = ["bp"]
