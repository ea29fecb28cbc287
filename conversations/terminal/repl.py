"""The two ways to use it: the interactive chat (REPL) and one message for scripts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TextIO

from django.conf import settings
from django.db import close_old_connections
from django.http import Http404

from .. import budgets, modelcache, selectors
from ..formatting import usd
from ..models import Conversation, LLMModel, Message
from .engine import CtrlC, Engine, ReplyPrinter
from .session import EXIT_OK, Outcome, Session, TerminalError, conversation_resolve, model_resolve, prompt_resolve, user_resolve

log = logging.getLogger(__name__)

OFFLINE_NOTICE = (
    "Offline demo model: answers come from Chatsite's bundled fake of the Anthropic API, not from "
    "Claude. Set ANTHROPIC_API_KEY to talk to Claude."
)
HISTORY_CHARS = 160


class Console:
    def __init__(self, *, stdin: TextIO, stdout: TextIO, stderr: TextIO, verbosity: int = 1) -> None:
        self.stdin, self.stdout, self.stderr, self.verbosity = stdin, stdout, stderr, verbosity

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def note(self, text: str) -> None:
        """A diagnostic (stderr), silenced by -v 0."""
        if self.verbosity > 0:
            self.err(text)


def report_failure(console: Console, outcome: Outcome) -> None:
    """The stored human message of a refusal or failure: never a traceback."""
    if outcome.status == "refused":
        console.err(outcome.error)
    elif outcome.status not in (Message.Status.COMPLETE, Message.Status.STOPPED):
        console.err(f"Error: {outcome.error or 'The reply failed.'}" + (" The text so far is kept." if outcome.text else ""))
    elif outcome.error:  # complete but cut off at the maximum length
        console.err(outcome.error)


def one_shot(session: Session, console: Console, content: str, *, as_json: bool) -> int:
    """Send one message; the reply text (or the JSON of the final message) goes to stdout."""
    printer = ReplyPrinter(None if as_json else console.stdout)
    outcome = session.send(content, printer)
    if as_json:
        console.out(outcome.as_json())
    elif outcome.text and not outcome.text.endswith("\n") and console.stdout.isatty():
        console.out()  # on a terminal only: piped, stdout is exactly the reply
    report_failure(console, outcome)
    if outcome.status != "refused":
        console.note(f"{outcome.footer()} conversation {outcome.conversation_id}")
    return outcome.exit_code


HELP = """\
/new          start a new conversation (same model and prompt) with your next message
/history      the current conversation, one line per message
/model [ID]   show the models; with an ID, your next message starts a conversation with it
/usage        this month's spend and limit, and what this conversation cost
/quit         leave (Ctrl+D too); Ctrl+C stops a reply while it is being written
Anything else is sent to Claude. Start a line with // to send a message beginning with /."""


class Repl:
    def __init__(self, session: Session, console: Console, *, interactive: bool) -> None:
        self.session = session
        self.console = console
        self.interactive = interactive  # a person at a terminal: prompts and line editing
        if interactive:
            try:
                import readline  # noqa: F401  (input() then edits lines and keeps a history)
            except ImportError:
                pass
        self.commands: dict[str, Callable[[str], bool]] = {
            "/new": self.cmd_new, "/history": self.cmd_history, "/model": self.cmd_model, "/usage": self.cmd_usage,
            "/help": self.cmd_help, "/quit": self.cmd_quit, "/exit": self.cmd_quit,
        }

    def run(self) -> int:
        self.banner()
        while True:
            try:
                line = self.read()
            except (EOFError, KeyboardInterrupt):
                if self.interactive:
                    self.console.out()
                return EXIT_OK
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                if text.startswith("/") and not text.startswith("//"):
                    if not self.command(text.strip()):
                        return EXIT_OK
                else:
                    self.say(text[1:] if text.startswith("//") else text)
            except Exception as exc:  # keep the session (and its conversation) going
                if self.console.verbosity >= 2:
                    log.exception("Terminal chat: %r failed", text[:40])
                self.console.err(f"Something went wrong ({type(exc).__name__}); try again. Run with -v 2 for details.")

    def command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        command = self.commands.get(name.lower())
        if command is None:
            self.console.err(f"Unknown command {name}. /help lists the commands; start a line with // to send it as a message.")
            return True
        return command(arg.strip())

    def read(self) -> str:
        if self.interactive:
            return input("you> ")
        line = self.console.stdin.readline()
        if not line:
            raise EOFError
        return line

    def say(self, text: str) -> None:
        outcome = self.session.send(text, ReplyPrinter(self.console.stdout))
        if outcome.status == "refused":
            report_failure(self.console, outcome)
            return
        if outcome.text and not outcome.text.endswith("\n"):
            self.console.out()
        self.console.out(outcome.footer() + (" The text so far is kept." if outcome.status == Message.Status.STOPPED else ""))
        report_failure(self.console, outcome)

    def banner(self) -> None:
        s = self.session
        if s.prompt is not None:
            prompt = f', prompt "{s.prompt.name}"'
        elif s.conversation is not None and s.conversation.system_prompt:
            prompt = ", its own system prompt"  # its preset was deleted; the text was kept
        else:
            prompt = ", no system prompt"
        self.console.out(f"Chatting as {s.user.get_username()} with {s.model.display_name} ({s.model.model_id}){prompt}.")
        if s.conversation is not None:
            self.console.out(f"Conversation {s.conversation.pk}: {s.conversation.display_title} (/history shows it).")
        self.console.out("/help lists the commands. Ctrl+C stops a reply; Ctrl+D or /quit leaves.")

    # --- commands: each returns False to leave ---------------------------------------------

    def cmd_help(self, arg: str) -> bool:
        self.console.out(HELP)
        return True

    def cmd_quit(self, arg: str) -> bool:
        return False

    def cmd_new(self, arg: str) -> bool:
        s = self.session
        s.conversation = None
        close_old_connections()
        current = modelcache.llm_model(s.model.model_id)
        if current is None or not current.enabled:
            try:
                s.model = model_resolve(model_id=None)
            except TerminalError as exc:
                self.console.err(str(exc))
                return True
            self.console.out(f"The previous model is turned off; using {s.model.display_name} ({s.model.model_id}).")
        self.console.out(f"New conversation: your next message starts it ({s.model.model_id}).")
        return True

    def cmd_model(self, arg: str) -> bool:
        s = self.session
        close_old_connections()
        if not arg:
            self.console.out(f"Model: {s.model.display_name} ({s.model.model_id}). Offered on this server:")
            for row in selectors.llm_models_enabled():
                mark = "*" if row.model_id == s.model.model_id else " "
                self.console.out(f" {mark} {row.model_id}  {row.display_name}")
            self.console.out("/model ID starts a new conversation with that model (a conversation keeps its model).")
            return True
        try:
            row = model_resolve(model_id=arg)
        except TerminalError as exc:
            self.console.err(str(exc))
            return True
        if s.conversation is not None and row.model_id == s.conversation.model:
            self.console.out(f"This conversation already uses {row.model_id}.")
            return True
        s.model = row
        kept = f" Conversation {s.conversation.pk} keeps {s.conversation.model}." if s.conversation is not None else ""
        s.conversation = None
        self.console.out(f"Model: {row.display_name} ({row.model_id}); your next message starts a new conversation.{kept}")
        return True

    def cmd_history(self, arg: str) -> bool:
        s = self.session
        if s.conversation is None:
            self.console.out("No messages yet: your next message starts the conversation.")
            return True
        close_old_connections()
        try:
            conversation = selectors.conversation_get_for_user(user=s.user, conversation_id=s.conversation.pk)
        except Http404:
            s.conversation = None
            self.console.err("This conversation no longer exists (deleted in the web UI?). Your next message starts a new one.")
            return True
        thread = selectors.conversation_thread(conversation=conversation)
        self.console.out(f"Conversation {conversation.pk}: {conversation.display_title} ({conversation.model}, {len(thread)} messages)")
        for message in thread:
            who = "you" if message.role == Message.Role.USER else "claude"
            status = "" if message.status == Message.Status.COMPLETE else f" ({message.status})"
            self.console.out(f"{who}{status}: {_trim(message.content)}")
        return True

    def cmd_usage(self, arg: str) -> bool:
        s = self.session
        close_old_connections()
        status = budgets.status_for(s.user.pk)
        resets = status.resets_at.strftime("%B %-d")
        if status.limit is None:
            self.console.out(f"This month: {usd(status.spent)} (no monthly limit).")
        else:
            self.console.out(f"This month: {usd(status.spent)} of your {usd(status.limit)} limit (resets {resets}).")
        if s.conversation is not None:
            totals = selectors.conversation_usage_totals(conversation=s.conversation)
            self.console.out(f"This conversation: {usd(totals.cost)}.")
        return True


def _trim(text: str, limit: int = HISTORY_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def chat(*, console: Console, username: str | None, conversation_id: int | None, model_id: str | None,
         prompt_name: str | None, words: list[str], interactive: bool, as_json: bool) -> int:
    """The command: resolve who/where/what, then the REPL or one message. Returns the exit code."""
    if interactive and words:
        raise TerminalError("--interactive takes no message argument: type your messages at the prompt.")
    repl = interactive or (not words and console.stdin.isatty())
    if repl and as_json:
        raise TerminalError("--json is for one message (an argument, or - for stdin), not the interactive mode.")
    user = user_resolve(username=username)
    conversation = None
    if conversation_id is not None:
        conversation = conversation_resolve(user=user, conversation_id=conversation_id)
        if model_id or prompt_name:
            raise TerminalError(
                f"--model and --prompt set up a new conversation; conversation {conversation.pk} keeps its own "
                f"({conversation.model}). Leave them out, or type /model or /new in the chat."
            )
        model = LLMModel.objects.filter(model_id=conversation.model).first() or LLMModel(model_id=conversation.model, display_name=conversation.model, enabled=False)
        prompt = conversation.preset
    else:
        model = model_resolve(model_id=model_id)
        prompt = prompt_resolve(user=user, name=prompt_name)
    content = ""
    if not repl:
        content = console.stdin.read().rstrip("\r\n") if words in ([], ["-"]) else " ".join(words)

    if settings.CHATSITE_OFFLINE_DEMO:
        console.note(OFFLINE_NOTICE)
    engine = Engine()
    try:
        engine.start()
        ctrl_c = CtrlC(engine)
        ctrl_c.install()
        session = Session(user=user, engine=engine, ctrl_c=ctrl_c, model=model, prompt=prompt, conversation=conversation)
        if repl:
            return Repl(session, console, interactive=console.stdin.isatty()).run()
        return one_shot(session, console, content, as_json=as_json)
    finally:
        engine.close()
