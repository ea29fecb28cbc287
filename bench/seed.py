"""Users, sessions and conversations in the bench database, straight through Django's ORM.

`setup()` configures Django in the bench process for the bench database (call once, after the
database exists and is migrated). Passwords are unusable: nobody logs in over HTTP, the bench
writes the sessions itself, so no 1M-iteration password hashing per user.
"""

from __future__ import annotations

import os


def setup(env: dict[str, str]) -> None:
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "REDIS_URL", "CHANNEL_LAYER_PREFIX", "ALLOWED_HOSTS", "DEBUG"):
        os.environ[key] = env[key]
    import django

    django.setup()


def _session_for(user) -> str:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = user._meta.pk.value_to_string(user)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def staff_session(name: str) -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user = get_user_model().objects.create(username=name, password=make_password(None), is_staff=True)
    return _session_for(user)


def clients(tag: str, n: int) -> list[tuple[str, int]]:
    """N users, each logged in (session key) with one fresh conversation: [(sessionid, conversation id)]."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connections, transaction

    from conversations import services

    User = get_user_model()
    with transaction.atomic():
        users = User.objects.bulk_create([User(username=f"bench-{tag}-{i}", password=make_password(None)) for i in range(n)])
        if any(u.pk is None for u in users):  # backends that do not return ids from bulk_create
            users = list(User.objects.filter(username__startswith=f"bench-{tag}-").order_by("id"))
        out = [(_session_for(u), services.conversation_create(owner=u).pk) for u in users]
    connections.close_all()  # no connection (or SQLite lock) held while the server runs
    return out
