"""Who is chatting, where, with what model and prompt; one message from send to final state.

No chat logic of its own: `services.conversation_create` and `services.message_send`, as a
websocket send does, then the real runner on the terminal's hub (see engine.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections, transaction
from django.http import Http404

from .. import frames, modelcache, selectors, services
from ..errors import ChatError
from ..formatting import tokens, usd
from ..models import Conversation, LLMModel, Message, SystemPrompt
from .engine import CtrlC, Engine, ReplyPrinter, wait

EXIT_OK = 0
EXIT_FAILED = 1  # the reply failed (upstream error, interrupted); the text so far was printed
EXIT_USAGE = 2  # bad arguments: unknown user, conversation, model or prompt
EXIT_REFUSED = 3  # refused before Claude was asked: over budget, busy, empty or too long, model off
EXIT_STOPPED = 130  # Ctrl+C stopped the reply; its text so far is kept as "stopped"

_MONEY = Decimal("0.00000001")


class TerminalError(Exception):
    """A problem with the command line, said plainly (the command turns it into exit code 2)."""


# --- choosing who, where and with what ------------------------------------------------------


def user_resolve(*, username: str | None) -> AbstractBaseUser:
    """The named user, or the only active user when no name is given."""
    user_model = get_user_model()
    if username:
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise TerminalError(f"No user named {username!r}.")
        if not user.is_active:
            raise TerminalError(f"The account {username!r} is deactivated.")
        return user
    users = list(user_model._default_manager.filter(is_active=True).order_by("pk")[:2])
    if not users:
        raise TerminalError("There are no accounts yet: sign up in the web UI (or run manage.py createsuperuser) first.")
    if len(users) > 1:
        raise TerminalError("Several people use this site: say who you are with --user NAME.")
    return users[0]


def conversation_resolve(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    try:
        return selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    except Http404:
        raise TerminalError(f"No such conversation: {conversation_id}.") from None


def model_resolve(*, model_id: str | None) -> LLMModel:
    enabled = list(selectors.llm_models_enabled())
    if not enabled:
        raise TerminalError("No model is enabled on this server. Ask an administrator.")
    if not model_id:
        return modelcache.default_model() or enabled[0]
    for row in enabled:
        if row.model_id == model_id:
            return row
    raise TerminalError(f"The model {model_id!r} is not offered on this server. Choose one of: {', '.join(r.model_id for r in enabled)}.")


def prompt_resolve(*, user: AbstractBaseUser, name: str | None) -> SystemPrompt | None:
    """An active preset this person may use (presets can be restricted to groups), by name."""
    if not name:
        return selectors.system_prompt_default(user=user)
    active = list(selectors.system_prompts_active(user=user))
    found = next((p for p in active if p.name == name), None) or next((p for p in active if p.name.lower() == name.lower()), None)
    if found is None:
        choices = ", ".join(repr(p.name) for p in active) or "none are set up"
        raise TerminalError(f"No system prompt named {name!r}. Choose one of: {choices}.")
    return found



# --- one message, start to finish -------------------------------------------------------------


@dataclass
class Outcome:
    """What became of a message: refused before Claude was asked, or the reply's final state."""

    status: str  # a Message.Status, or "refused"
    text: str = ""
    conversation_id: int | None = None
    message_id: int | None = None
    model: str = ""
    usage: dict[str, Any] | None = None
    error_code: str = ""
    error: str = ""

    @property
    def exit_code(self) -> int:
        return {
            "refused": EXIT_REFUSED, Message.Status.COMPLETE: EXIT_OK, Message.Status.STOPPED: EXIT_STOPPED,
        }.get(self.status, EXIT_FAILED)

    @property
    def cost(self) -> str:
        try:
            return str(Decimal(str((self.usage or {}).get("cost") or 0)).quantize(_MONEY))
        except (InvalidOperation, ValueError):
            return "0.00000000"

    def as_json(self) -> str:
        usage = {k: int((self.usage or {}).get(k) or 0) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
        return json.dumps({
            "conversation_id": self.conversation_id, "id": self.message_id, "status": self.status, "model": self.model,
            "text": self.text, "usage": usage, "cost": self.cost, "error_code": self.error_code, "error": self.error,
        }, ensure_ascii=False)

    def footer(self) -> str:
        """One line of tokens and cost, like the line under a reply in the web UI."""
        u = self.usage or {}
        parts = [f"{tokens(int(u.get('input_tokens') or 0))} in"]
        if u.get("cache_read_input_tokens"):
            parts.append(f"{tokens(int(u['cache_read_input_tokens']))} cache read")
        if u.get("cache_creation_input_tokens"):
            parts.append(f"{tokens(int(u['cache_creation_input_tokens']))} cache write")
        parts += [f"{tokens(int(u.get('output_tokens') or 0))} out", usd(self.cost)]
        status = "" if self.status == Message.Status.COMPLETE else f"{self.status} · "
        return f"[{status}{' · '.join(parts)}]"


class Session:
    """The person, the current conversation (None: the next message starts one) and its settings."""

    def __init__(self, *, user: AbstractBaseUser, engine: Engine, ctrl_c: CtrlC, model: LLMModel,
                 prompt: SystemPrompt | None, conversation: Conversation | None = None) -> None:
        self.user = user
        self.engine = engine
        self.ctrl_c = ctrl_c
        self.model = model
        self.prompt = prompt
        self.conversation = conversation

    def send(self, content: str, printer: ReplyPrinter) -> Outcome:
        """Store the message, run the reply on the hub while `printer` shows it, return the end."""
        close_old_connections()
        self.ctrl_c.begin()
        try:
            try:
                # One transaction: a refused first message leaves no empty conversation behind.
                with transaction.atomic():
                    conversation = self.conversation or services.conversation_create(
                        owner=self.user, model=self.model.model_id, preset_id=self.prompt.pk if self.prompt else None
                    )
                    user_message, reply, spec = services.message_send(conversation=conversation, content=content, runner=self.engine.channel)
            except ChatError as exc:
                conversation_id, error = (self.conversation.pk if self.conversation else None), exc.message
                if exc.code == "not_found":  # the conversation was deleted (e.g. in the web UI)
                    self.conversation, error = None, f"{error} Your next message starts a new one."
                return Outcome(status="refused", conversation_id=conversation_id, error_code=exc.code, error=error)
            except Conversation.DoesNotExist:
                gone, self.conversation = self.conversation, None
                return Outcome(status="refused", conversation_id=gone.pk if gone else None, error_code="not_found",
                               error="This conversation no longer exists (deleted in the web UI?). Your next message starts a new one.")
            self.conversation = reply.conversation
            created = {
                "type": "message.created", "client_id": "", "conversation_id": conversation.pk,
                "conversation_title": reply.conversation.title,
                "user_message": frames.message_dict(user_message), "reply": frames.message_dict(reply),
            }
            future = self.engine.reply(spec, printer, created)
            self.ctrl_c.started(str(spec.generation_id))
            end = wait(future)
        finally:
            self.ctrl_c.end()
        # The final frame carries the stored state; should it ever be unreadable, read the row.
        message = end.get("message") or frames.message_dict(Message.objects.get(pk=reply.pk), html=False)
        return Outcome(
            status=message["status"], text=printer.text, conversation_id=reply.conversation_id, message_id=message["id"],
            model=message.get("model", ""), usage=message.get("usage") or {}, error_code=message.get("error_code", ""),
            error=message.get("error", ""),
        )

