from webapp.contacts.routes import bp

__all__ = ["bp"]
