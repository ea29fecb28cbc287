"""Channel-layer group names. One group per person: all their sockets, every tab and process."""


def user_group(user_id: int) -> str:
    return f"chat.u{user_id}"
