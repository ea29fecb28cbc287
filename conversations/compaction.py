"""Background compaction: fold the oldest turns of a long conversation into a rolling summary.

When a conversation's context passes the high-water mark, a Celery task summarises the oldest
turns after the current summary with the utility model, down to the low-water mark. Requests
then send summary + the turns after it. It happens in steps, not every turn, so the cached
prefix stays stable between steps. Nothing is deleted: the person still sees every message.

The task is idempotent: it claims the conversation with a conditional update (a claim whose
holder is gone may be taken over: see `claim`), calls the model outside any transaction, and a
cut can only get one summary (unique constraint), so running it twice yields one summary.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import llm, metering, modelcache, prompting, queueing, selectors
from .cleantext import storable
from .models import Conversation, LLMModel, Message, Summary, UsageRecord
from .pricing import Prices
from .utility import utility_complete

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
    """Queue compaction once the surrounding transaction commits, from the publishing thread
    (queueing.publish_soon): never blocks a reply, nor the send that asked for it."""
    transaction.on_commit(lambda: queueing.publish_soon([(queueing.COMPACTION, conversation_id)]))


# --- The task's work ---------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    conversation_id: int
    holder: str  # "host:pid:token" of the worker process that holds it


def _new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_is_gone(holder: str) -> bool:
    """True when `holder` was a process of this machine that no longer runs. A worker killed
    mid-summary has its task redelivered, often to a sibling process of the same machine:
    that one can tell at once that the claim is dead. (A holder on another machine is known
    gone when it stops renewing its claim.)"""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def claim(conversation_id: int) -> Claim | None:
    """Claim a conversation's compaction: the claim, or None while another worker holds it.

    A claim is free when nobody holds it, when its holder stopped renewing it for
    CHATSITE_COMPACTION_CLAIM_SECONDS, or when its holder is a dead process of this machine.
    Taken with a conditional update on what was read, so two workers never both get it.
    """
    current = Conversation.objects.filter(pk=conversation_id).values_list("compaction_claimed_at", "compaction_claimed_by").first()
    if current is None:
        return None
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CHATSITE_COMPACTION_CLAIM_SECONDS)
    free = Q(compaction_claimed_at__isnull=True) | Q(compaction_claimed_at__lt=stale)
    claimed_at, holder = current
    if claimed_at is not None and holder and holder_is_gone(holder):
        log.info("Compaction of conversation %s: its holder %s is gone; taking over", conversation_id, holder)
        free |= Q(compaction_claimed_at=claimed_at, compaction_claimed_by=holder)
    mine = Claim(conversation_id=conversation_id, holder=_new_holder())
    taken = Conversation.objects.filter(pk=conversation_id).filter(free).update(compaction_claimed_at=now, compaction_claimed_by=mine.holder)
    return mine if taken else None


def renew(c: Claim) -> bool:
    """Say the holder is still at work; False when the claim was taken over meanwhile."""
    return bool(Conversation.objects.filter(pk=c.conversation_id, compaction_claimed_by=c.holder).update(compaction_claimed_at=timezone.now()))


def release(c: Claim) -> None:
    # Only our own claim: a worker slow enough for its claim to go stale must not clear the
    # claim of the worker that took over.
    Conversation.objects.filter(pk=c.conversation_id, compaction_claimed_by=c.holder).update(compaction_claimed_at=None, compaction_claimed_by="")


@contextmanager
def renewing(c: Claim):
    """Renew the claim from a thread every third of its lifetime while the body runs (the
    summary call can take longer than the claim lasts)."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(settings.CHATSITE_COMPACTION_CLAIM_SECONDS / 3):
                renew(c)
        except Exception:  # noqa: BLE001 - a missed renewal costs at most a second summary call
            log.warning("Could not renew the compaction claim of conversation %s", c.conversation_id, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name=f"compaction-claim-{c.conversation_id}", daemon=True)
    thread.start()
    try:
        yield c
    finally:
        stop.set()
        thread.join(timeout=5)


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
    factor = model.tokenizer_factor
    sizes = [prompting.estimate_tokens(m.content, factor) + prompting.MESSAGE_OVERHEAD_TOKENS for m in thread]
    fixed = prompting.estimate_tokens(conversation.system_prompt, factor) + prompting.estimate_tokens(previous.text if previous else "", factor)
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


def summary_prompt(*, previous: str, transcript: str) -> str:
    parts = []
    if previous:
        parts.append(f"<previous_summary>\n{previous}\n</previous_summary>")
    parts.append(f"<transcript>\n{transcript}\n</transcript>")
    parts.append("Write the updated summary.")
    return "\n\n".join(parts)


def summary_completion(*, model: LLMModel, previous: str, transcript: str) -> llm.Completion:
    """The utility call that merges a previous summary and a transcript (utility.py keeps
    thinking out of the summary's budget)."""
    prompt = summary_prompt(previous=previous, transcript=transcript)
    return utility_complete(model=model, system=SUMMARISER_SYSTEM, prompt=prompt, text_tokens=settings.CHATSITE_SUMMARY_MAX_TOKENS)


def summarise(p: Plan) -> tuple[str, llm.Usage, LLMModel]:
    """The model call (no transaction is open here), in the ledger before it is made. A reply
    without text (thinking used the whole limit) gives "" and a warning: no summary is made,
    the next reply asks again."""
    utility = modelcache.utility_model() or p.model
    previous, transcript = p.previous.text if p.previous else "", _transcript(p.fold)
    completion = metering.metered(
        lambda: summary_completion(model=utility, previous=previous, transcript=transcript),
        user_id=p.conversation.owner_id, conversation_id=p.conversation.pk, kind=UsageRecord.Kind.SUMMARY, prices=Prices.of(utility),
        estimated=metering.estimate(model=utility, system=SUMMARISER_SYSTEM, prompt=summary_prompt(previous=previous, transcript=transcript),
                                    text_tokens=settings.CHATSITE_SUMMARY_MAX_TOKENS),
    )
    if not completion.text.strip():
        log.warning(
            "Compaction of conversation %s: the summary reply from %s had no text (stop reason %s)",
            p.conversation.pk, utility.model_id, completion.stop_reason or "none",
        )
    return completion.text.strip(), completion.usage, utility


def compact(conversation_id: int) -> Summary | None:
    """Run one compaction step for a conversation; safe to call twice or concurrently."""
    mine = claim(conversation_id)
    if mine is None:
        log.info("Compaction of conversation %s is already claimed", conversation_id)
        return None
    try:
        with renewing(mine):
            return _compact(conversation_id)
    finally:
        release(mine)


def _compact(conversation_id: int) -> Summary | None:
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
    if not text:
        return None
    covered = len(p.fold) + (p.previous.covered_messages if p.previous else 0)
    try:
        with transaction.atomic():
            return Summary.objects.create(conversation=conversation, upto=p.upto, text=storable(text), model=utility.model_id, covered_messages=covered)
    except IntegrityError:
        return Summary.objects.filter(conversation=conversation, upto=p.upto).first()
