class ChatError(Exception):
    """A refusal to show the person as-is: `code` is stable for clients, `message` is human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):
        return (type(self), (self.code, self.message))


def is_database_outage(exc: BaseException) -> bool:
    """A database error that says nothing about the data: the server is unreachable, restarting,
    out of connections, or dropped ours (psycopg's connection failures and the pool's timeout
    are OperationalErrors). Worth retrying later; a send is refused with the text kept."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))


def database_unavailable() -> ChatError:
    return ChatError(
        "unavailable",
        "The server cannot reach its database right now, so nothing was sent. Your text is still in the box; try again in a moment.",
    )
