"""Conversations written straight through the ORM: a 2,000-message one, and one with every
kind of message the page can show (for the accessibility checks).

Used in-process (tests/test_views_large.py) and in the live stack's database through
`manage.py shell` (tests/test_browser_feel.py): the stack's children have the repository on
their PYTHONPATH.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from conversations import services
from conversations.models import Conversation, Message, Summary, UsageRecord

CODE_EVERY = 5  # every fifth reply carries a highlighted code block, as real threads do


def _reply_text(n: int, salt: str = "") -> str:
    if n % CODE_EVERY == 0:
        return (
            f"Here is step **{n}**{salt} of the plan, with a small helper:\n\n"
            f"```python\ndef step_{n}(items: list[int]) -> int:\n    # keep the even ones\n"
            f"    return sum(i for i in items if i % 2 == 0) + {n}\n```\n\n"
            "- it keeps the *even* numbers\n- and adds the step number\n"
        )
    return f"Reply {n}{salt}: a paragraph with `inline code`, a [link](https://example.com/{n}) and some **bold** words to render."


def seed_long_conversation(
    *, owner: AbstractBaseUser, messages: int = 2000, title: str = "A very long conversation", salt: str = ""
) -> Conversation:
    """`messages` messages alternating user/assistant on one parent chain; the last is a reply
    whose text ends with "Final reply <n>.". A `salt` makes the texts new to the HTML cache."""
    conversation = services.conversation_create(owner=owner)
    with transaction.atomic():
        rows = [
            Message(
                conversation=conversation,
                role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
                content=f"Question {i // 2 + 1}: what comes next?" if i % 2 == 0 else _reply_text(i // 2 + 1, salt),
                model="" if i % 2 == 0 else conversation.model,
                input_tokens=0 if i % 2 == 0 else 1200 + i,
                output_tokens=0 if i % 2 == 0 else 80,
                cost=Decimal("0") if i % 2 == 0 else Decimal("0.00421500"),
            )
            for i in range(messages)
        ]
        rows[-1].content += f"\n\nFinal reply {messages}."
        created = Message.objects.bulk_create(rows, batch_size=500)
        if created[0].pk is None:  # a backend that does not return ids from bulk inserts
            created = list(Message.objects.filter(conversation=conversation).order_by("id"))
        for parent, child in zip(created, created[1:]):
            child.parent_id = parent.pk
        Message.objects.bulk_update(created[1:], ["parent"], batch_size=500)
        conversation.current_leaf_id = created[-1].pk
        conversation.title = title
        conversation.save(update_fields=["current_leaf", "title", "updated_at"])
    return conversation


SHOWCASE_REPLY = """## A heading

Some **bold**, some *emphasis*, `inline code` and [a link](https://example.com/docs).

```python
def greet(name: str) -> str:
    # say hello
    return f"Hello, {name}!" + str(42)
```

| Column | Value |
| --- | ---: |
| one | 1 |
| two | 2 |

> A quotation, and a list:

1. first
2. second
"""


def seed_showcase_conversation(*, owner: AbstractBaseUser) -> Conversation:
    """One conversation with a finished reply (code, table, quote), a summary marker, a reply
    trimmed to fit (context note), a stopped reply (Continue, Retry) and a failed one; plus the
    usage ledger entries the usage page shows."""
    conversation = services.conversation_create(owner=owner)
    model = conversation.model
    parent = None
    replies = []

    def add(role: str, content: str, **fields) -> Message:
        nonlocal parent
        parent = Message.objects.create(conversation=conversation, parent=parent, role=role, content=content, **fields)
        return parent

    with transaction.atomic():
        add("user", "Show me some formatting, please.")
        replies.append(add("assistant", SHOWCASE_REPLY, model=model, input_tokens=1200, output_tokens=180, cache_creation_input_tokens=1100, cost=Decimal("0.0123")))
        add("user", "And a long answer, trimmed?")
        replies.append(add("assistant", "Here it is, from what I could still see.", model=model, input_tokens=900, output_tokens=40, cache_read_input_tokens=1100,
                           context_note="The oldest messages were left out so this reply fits Claude's context.", cost=Decimal("0.0042")))
        add("user", "Count to a hundred.")
        replies.append(add("assistant", "One, two, three, four", model=model, status=Message.Status.STOPPED, input_tokens=300, output_tokens=8, cost=Decimal("0.0011")))
        add("user", "Try again?")
        replies.append(add("assistant", "Partial answer", model=model, status=Message.Status.ERROR, error_code="overloaded",
                           error="Claude is overloaded right now. The text so far is kept: Continue or Retry in a moment.", cost=Decimal("0")))
        Summary.objects.create(conversation=conversation, upto=replies[0], model=model, covered_messages=2, text="The person asked for **formatting**.")
        for reply in replies:
            UsageRecord.objects.create(user=owner, conversation=conversation, message=reply, kind=UsageRecord.Kind.REPLY, model=model,
                                       input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                                       cache_write_5m_tokens=reply.cache_creation_input_tokens, cache_read_tokens=reply.cache_read_input_tokens,
                                       cost=reply.cost, uncached_cost=reply.cost)
        UsageRecord.objects.create(user=owner, conversation=conversation, kind=UsageRecord.Kind.TITLE, model=model, input_tokens=50, output_tokens=8,
                                   cost=Decimal("0.0001"), uncached_cost=Decimal("0.0001"))
        conversation.current_leaf = parent
        conversation.title = "Formatting showcase"
        conversation.save(update_fields=["current_leaf", "title", "updated_at"])
    return conversation
