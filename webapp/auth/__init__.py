from webapp.auth.routes import bp, install_login_guard

__all__ = ["bp", "install_login_guard"]
