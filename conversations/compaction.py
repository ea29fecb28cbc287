"""Background compaction: fold the oldest turns of a long conversation into a rolling summary.

When a conversation's context passes the high-water mark, a Celery task summarises the oldest
turns after the current summary with the utility model, down to the low-water mark. Requests
then send summary + the turns after it. It happens in steps, not every turn, so the cached
prefix stays stable between steps. Nothing is deleted: the person still sees every message.

The task is idempotent: it claims the conversation with a conditional update (a stale claim
from a crashed worker may be taken over), calls the model outside any transaction, and a cut
can only get one summary (unique constraint), so running it twice yields one summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import llm, modelcache, prompting, selectors
from .cleantext import storable
from .models import Conversation, LLMModel, Message, Summary, UsageRecord
from .pricing import Prices

log = logging.getLogger(__name__)

SUMMARISER_SYSTEM = (
    "You maintain the memory of a long conversation between a person and Claude, an AI assistant. "
    "Write an updated summary that merges the previous summary (if any) with the new transcript. "
    "Keep every fact, decision, name, number, code identifier, open question and preference the "
    "person stated; drop pleasantries. Write in the third person, as compact notes, in the "
    "conversation's language. Output only the summary."
)


def thresholds(model: LLMModel) -> tuple[int, int]:
    """(high-water, low-water) in tokens for a model's conversations."""
    high = int(model.context_window * settings.CHATSITE_COMPACT_HIGH_WATER_SHARE)
    if settings.CHATSITE_CONTEXT_BUDGET_TOKENS:
        high = min(high, settings.CHATSITE_CONTEXT_BUDGET_TOKENS)
    return high, int(high * settings.CHATSITE_COMPACT_LOW_WATER_RATIO)


def active_summary(*, conversation: Conversation, thread: list[Message]) -> Summary | None:
    """The newest summary whose cut is on the visible thread (an edited branch has none)."""
    if getattr(conversation, "has_summary", True) is False:  # known from the locking query
        return None
    on_thread = {m.pk for m in thread}
    for summary in Summary.objects.filter(conversation=conversation).order_by("-created_at", "-id"):
        if summary.upto_id in on_thread:
            return summary
    return None


def should_compact(*, conversation: Conversation, model: LLMModel, summary: Summary | None) -> bool:
    """True when the last reply's exact context passed the high-water mark for the layout the
    next request uses (a summary made since then already shrank it)."""
    high, _ = thresholds(model)
    same_layout = conversation.context_summary_id == (summary.pk if summary else None)
    return same_layout and conversation.context_tokens >= high


def enqueue(conversation_id: int) -> None:
    """Queue compaction once the surrounding transaction commits; never blocks a reply."""
    from .tasks import compact_conversation

    def send() -> None:
        try:
            compact_conversation.delay(conversation_id)
        except Exception:
            log.exception("Could not queue compaction of conversation %s", conversation_id)

    transaction.on_commit(send)


# --- The task's work ---------------------------------------------------------------------


def claim(conversation_id: int) -> datetime | None:
    """Claim a conversation's compaction; the claim's time, or None while another worker's
    claim is fresh."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CHATSITE_COMPACTION_CLAIM_SECONDS)
    claimed = (
        Conversation.objects.filter(pk=conversation_id)
        .filter(Q(compaction_claimed_at__isnull=True) | Q(compaction_claimed_at__lt=stale))
        .update(compaction_claimed_at=now)
    )
    return now if claimed else None


def release(conversation_id: int, claimed_at: datetime) -> None:
    # Only our own claim: a worker slow enough for its claim to go stale must not clear the
    # claim of the worker that took over.
    Conversation.objects.filter(pk=conversation_id, compaction_claimed_at=claimed_at).update(compaction_claimed_at=None)


@dataclass
class Plan:
    conversation: Conversation
    model: LLMModel
    previous: Summary | None
    fold: list[Message]

    @property
    def upto(self) -> Message:
        return self.fold[-1]


def plan(conversation: Conversation) -> Plan | None:
    """Which turns to fold so the context falls to the low-water mark; None if none need to."""
    model = modelcache.llm_model(conversation.model)
    if model is None:
        return None
    thread = selectors.conversation_thread(conversation=conversation)
    previous = active_summary(conversation=conversation, thread=thread)
    if previous is not None:
        thread = thread[next(i for i, m in enumerate(thread) if m.pk == previous.upto_id) + 1 :]
    # Only finished turns are folded; a reply being written stays out.
    settled: list[Message] = []
    for message in thread:
        if message.status == Message.Status.STREAMING:
            break
        settled.append(message)
    sizes = [prompting.estimate_tokens(m.content) + prompting.MESSAGE_OVERHEAD_TOKENS for m in thread]
    fixed = prompting.estimate_tokens(conversation.system_prompt) + prompting.estimate_tokens(previous.text if previous else "")
    estimate = fixed + sum(sizes)
    # The last reply's usage is exact for this layout; scale the estimates to it. Not when
    # that reply's request was trimmed to fit the window: its usage counts only the turns it
    # kept, and trusting it would find nothing to fold, so every later send would trim again.
    last_reply = next((m for m in reversed(thread) if m.role == Message.Role.ASSISTANT and m.status != Message.Status.STREAMING), None)
    measured_all = last_reply is None or not last_reply.context_note
    same_layout = conversation.context_summary_id == (previous.pk if previous else None)
    exact = conversation.context_tokens if same_layout and measured_all else 0
    scale = exact / estimate if exact and estimate else 1.0
    high, low = thresholds(model)
    if max(exact, estimate * scale) < high:
        return None
    remaining = estimate * scale
    fold: list[Message] = []
    # Fold whole exchanges (ending on a reply) and always keep the newest exchange.
    for i, message in enumerate(settled[:-2]):
        if remaining <= low and fold and fold[-1].role == Message.Role.ASSISTANT:
            break
        fold.append(message)
        remaining -= sizes[i] * scale
    while fold and fold[-1].role != Message.Role.ASSISTANT:
        fold.pop()
    if not fold:
        return None
    return Plan(conversation=conversation, model=model, previous=previous, fold=fold)


def _transcript(messages: list[Message]) -> str:
    lines = []
    for m in messages:
        who = "Person" if m.role == Message.Role.USER else "Claude"
        lines.append(f"{who}: {m.content.strip()}")
    return "\n\n".join(lines)


def summarise(p: Plan) -> tuple[str, llm.Usage, LLMModel]:
    """The model call (no transaction is open here)."""
    utility = modelcache.utility_model() or p.model
    parts = []
    if p.previous is not None:
        parts.append(f"<previous_summary>\n{p.previous.text}\n</previous_summary>")
    parts.append(f"<transcript>\n{_transcript(p.fold)}\n</transcript>")
    parts.append("Write the updated summary.")
    text, usage = llm.complete(
        model=utility.model_id,
        system=SUMMARISER_SYSTEM,
        messages=[{"role": "user", "content": "\n\n".join(parts)}],
        max_tokens=settings.CHATSITE_SUMMARY_MAX_TOKENS,
    )
    return text.strip(), usage, utility


def compact(conversation_id: int) -> Summary | None:
    """Run one compaction step for a conversation; safe to call twice or concurrently."""
    from .services import usage_record

    claimed_at = claim(conversation_id)
    if claimed_at is None:
        log.info("Compaction of conversation %s is already claimed", conversation_id)
        return None
    try:
        # A deleted conversation (even one that can still be restored) costs nothing more.
        conversation = Conversation.objects.filter(pk=conversation_id, deleted_at__isnull=True).first()
        if conversation is None:
            return None
        p = plan(conversation)
        if p is None:
            return None
        existing = Summary.objects.filter(conversation=conversation, upto=p.upto).first()
        if existing is not None:
            return existing
        text, usage, utility = summarise(p)
        usage_record(
            user_id=conversation.owner_id, conversation_id=conversation.pk, message_id=None,
            kind=UsageRecord.Kind.SUMMARY, usage=usage, prices=Prices.of(utility),
        )
        if not text:
            return None
        covered = len(p.fold) + (p.previous.covered_messages if p.previous else 0)
        try:
            with transaction.atomic():
                return Summary.objects.create(conversation=conversation, upto=p.upto, text=storable(text), model=utility.model_id, covered_messages=covered)
        except IntegrityError:
            return Summary.objects.filter(conversation=conversation, upto=p.upto).first()
    finally:
        release(conversation_id, claimed_at)
