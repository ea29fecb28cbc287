from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        if settings.CHATSITE_COUNT_DB_WRITES:
            from . import dbstats

            dbstats.enable()
