class ChatError(Exception):
    """A refusal to show the person as-is: `code` is stable for clients, `message` is human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):
        return (type(self), (self.code, self.message))
