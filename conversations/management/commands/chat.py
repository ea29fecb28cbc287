"""`manage.py chat`: chat with Claude in a terminal, in the same conversations as the web UI.

A thin adapter over conversations.terminal (see docs/terminal.md for usage and exit codes).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations import terminal


class Command(BaseCommand):
    help = (
        "Chat with Claude in the terminal: a streaming REPL (/new, /history, /model, /usage, /quit; "
        "Ctrl+C stops a reply), or one message from the arguments or stdin for scripts."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("message", nargs="*", help="Send this one message and print the reply ('-': read it from stdin).")
        parser.add_argument("--user", help="Who is chatting (username). Optional when the site has one account.")
        parser.add_argument("--conversation", type=int, metavar="ID", help="Go on with one of your conversations.")
        parser.add_argument("--model", metavar="ID", help="Model of a new conversation (an enabled model id).")
        parser.add_argument("--prompt", metavar="NAME", help="System prompt of a new conversation (an active preset's name).")
        parser.add_argument("-i", "--interactive", action="store_true", help="The interactive chat even when stdin is not a terminal.")
        parser.add_argument("--json", action="store_true", help="One message: print the final reply as JSON (id, status, text, usage, cost).")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        if verbosity < 2:
            logging.getLogger().setLevel(logging.WARNING)  # no INFO lines between replies
            # Without Redis, Celery runs titles eagerly on memory:// and kombu warns about its hostname.
            logging.getLogger("kombu").setLevel(logging.ERROR)
        console = terminal.Console(
            stdin=options.get("stdin") or sys.stdin, stdout=options.get("stdout") or sys.stdout,
            stderr=options.get("stderr") or sys.stderr, verbosity=verbosity,
        )
        try:
            code = terminal.chat(
                console=console, username=options["user"], conversation_id=options["conversation"], model_id=options["model"],
                prompt_name=options["prompt"], words=options["message"], interactive=options["interactive"], as_json=options["json"],
            )
        except terminal.TerminalError as exc:
            raise CommandError(str(exc), returncode=terminal.EXIT_USAGE) from None
        except KeyboardInterrupt:
            code = terminal.EXIT_STOPPED
        if code:
            sys.exit(code)
