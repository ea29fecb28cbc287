"""`manage.py chat`: talk to Claude from a terminal, in the conversations the web UI shows.

No chat logic of its own. A message goes through `services.message_send` as a websocket send
does, and the reply is written by the real runner on this process's hub. The hub lives on an
asyncio loop in a helper thread (`Engine`) so it keeps listening on its channel: a browser tab
of the same person follows the reply live and its Stop button works. The main thread owns the
terminal (line editing, Ctrl+C) and makes the synchronous service calls. `ReplyPrinter` is the
hub follower that writes each new piece of text as it arrives.

Modules: `engine` (the hub on its own loop, the printing follower, Ctrl+C), `session` (who,
where, what; one message start to finish), `repl` (the interactive chat and the one-shot mode).
Exit codes of the one-shot mode are the EXIT_* constants (documented in docs/terminal.md).
"""

from .repl import Console, chat
from .session import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_STOPPED, EXIT_USAGE, TerminalError

__all__ = ["Console", "chat", "TerminalError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_REFUSED", "EXIT_STOPPED"]
