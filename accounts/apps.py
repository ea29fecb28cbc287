from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from . import sessions

        # Open websockets close when their session ends (log-out, new password, deactivation,
        # deletion): see accounts.sessions.
        sessions.connect_signals()
