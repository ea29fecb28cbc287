"""`manage.py ensure_demo_user`: the accounts and presets `make run` needs to be usable at once.

Creates (or resets the password of) a non-staff `demo` user and a superuser `admin`, and
seeds a few system prompt presets when there are none. Passwords come from
CHATSITE_DEMO_PASSWORD / CHATSITE_ADMIN_PASSWORD, else are generated once and kept in
var/ (mode 0600) so they stay the same across runs. Prints `DEMO_LOGIN demo <password>`
and `ADMIN_LOGIN admin <password>` for scripts/devserver.py to show.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management.base import BaseCommand
from django.db import transaction

from conversations.models import SystemPrompt

PRESETS: list[dict[str, Any]] = [
    {
        "name": "General assistant",
        "is_default": True,
        "text": (
            "You are Claude, a helpful assistant. Answer clearly and accurately, and say so "
            "when you are not sure. Use Markdown for structure and fenced blocks for code."
        ),
    },
    {
        "name": "Code reviewer",
        "is_default": False,
        "text": (
            "You are a careful senior code reviewer. Point out bugs, security problems and "
            "unclear code first, then smaller style issues. Quote the lines you mean and "
            "suggest concrete fixes."
        ),
    },
    {
        "name": "Concise",
        "is_default": False,
        "text": "Answer as briefly as possible: a sentence or a short list. No preamble.",
    },
]


def stored_password(env_var: str, path: Path) -> str:
    """The password from `env_var`, else the one kept in `path`, else a new one kept there."""
    from_env = os.environ.get(env_var, "").strip()
    if from_env:
        return from_env
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    # O_EXCL: two concurrent first runs must not end up with different passwords.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def account_ensure(*, username: str, password: str, admin: bool) -> AbstractUser:
    user_model = get_user_model()
    user, _created = user_model.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_active = True
    user.is_staff = admin
    user.is_superuser = admin
    user.save()
    return user


@transaction.atomic
def presets_ensure() -> int:
    """Seed the presets only into an empty table: admins own them after that."""
    if SystemPrompt.objects.exists():
        return 0
    for preset in PRESETS:
        SystemPrompt.objects.create(**preset, is_active=True)
    return len(PRESETS)


class Command(BaseCommand):
    help = "Create or reset the demo and admin users and seed default system prompts."

    def handle(self, *args: Any, **options: Any) -> None:
        var_dir = Path(settings.VAR_DIR)
        logins = [
            ("DEMO_LOGIN", "demo", "CHATSITE_DEMO_PASSWORD", var_dir / "demo_password", False),
            ("ADMIN_LOGIN", "admin", "CHATSITE_ADMIN_PASSWORD", var_dir / "admin_password", True),
        ]
        for label, username, env_var, path, admin in logins:
            password = stored_password(env_var, path)
            account_ensure(username=username, password=password, admin=admin)
            self.stdout.write(f"{label} {username} {password}")
        created = presets_ensure()
        if created:
            self.stderr.write(f"Created {created} system prompt presets.")
