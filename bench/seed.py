"""Users, sessions and conversations in a bench database, straight through Django's ORM.

Run as a script from the tree whose code the bench measures (its cwd and PYTHONPATH), so the
rows are written by that tree's own models (a baseline build may have other migrations):

    python bench/seed.py [--staff NAME] [--clients TAG N]

prints one line `SEED_RESULT {"code_root": the tree Django's code came from, "staff": sessionid,
"clients": [[sessionid, conversation id], ...]}`.
Django's settings come from the environment (DATABASE_URL etc., as Stack.chatsite_env gives).
Passwords are unusable: nobody logs in over HTTP, the bench writes the sessions itself, so no
1M-iteration password hashing per user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # (bench/'s modules are not the measured tree's; it comes from PYTHONPATH)


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--staff", metavar="NAME")
    p.add_argument("--clients", nargs=2, metavar=("TAG", "N"))
    a = p.parse_args(argv)
    setup()
    import conversations

    out: dict = {"code_root": str(Path(conversations.__file__).resolve().parent.parent)}
    if a.staff:
        out["staff"] = staff_session(a.staff)
    if a.clients:
        out["clients"] = clients(a.clients[0], int(a.clients[1]))
    print("SEED_RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
