from webapp.email_templates.routes import bp

__all__ = ["bp"]
