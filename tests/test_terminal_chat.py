"""`manage.py chat`, driven as a subprocess on the test database and the fake Anthropic server.

The command is a separate process, like a person's terminal: it sees the rows these
transactional tests commit, and the tests read back what it stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from accounts.models import SpendLimit
from conversations import selectors, services
from conversations.models import Conversation, Message, SystemPrompt, UsageRecord
from fakeanthropic.demo import demo_reply
from tests.celeryworker import database_url
from tests.conftest import Socket, stored_message

pytestmark = [pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


@pytest.fixture
def chat_env(fake_anthropic) -> dict[str, str]:
    from django.db import connection

    env = dict(os.environ)
    env.pop("CHATSITE_OFFLINE_DEMO", None)
    env.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        ANTHROPIC_API_KEY="test-key",
        # Failures end fast: no SDK retries, one short retry window before the first token.
        ANTHROPIC_MAX_RETRIES="0",
        CHATSITE_RETRY_BUDGET_SECONDS="1",
        CHATSITE_CATALOG_CACHE_SECONDS="0",
        CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_chat(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """One run to its end; stdin is always a pipe (never the terminal pytest runs in)."""
    return subprocess.run(
        [sys.executable, "manage.py", "chat", *args], cwd=REPO_ROOT, env=env, input=stdin,
        capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT,
    )


class ChatProcess:
    """The interactive chat on pipes: write lines, watch what it prints as it prints it."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "chat", *args], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._out, self._err = bytearray(), bytearray()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream, buffer: bytearray) -> None:
        # Raw reads: a reply being streamed has no newline yet.
        while chunk := os.read(stream.fileno(), 4096):
            buffer.extend(chunk)

    @property
    def stdout(self) -> str:
        return bytes(self._out).decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return bytes(self._err).decode("utf-8", errors="replace")

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        self.proc.stdin.flush()

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never printed (exit {self.proc.poll()}):\n{self.stdout}\n--- stderr:\n{self.stderr}")
            time.sleep(0.02)

    def finish(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def chat_process(chat_env):
    started: list[ChatProcess] = []

    def start(*args: str) -> ChatProcess:
        started.append(ChatProcess(chat_env, *args))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def thread_of(conversation: Conversation) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in selectors.conversation_thread(conversation=conversation)]


def roles_sent(fake, marker: str) -> list[str]:
    request = next(r for r in fake.requests() if marker in json.dumps(r["body"]["messages"][-1]))
    return [m["role"] for m in request["body"]["messages"]]


# --- one message, for scripts ---------------------------------------------------------------


def test_one_shot_prints_exactly_the_reply_and_stores_the_exchange(chat_env, fake_anthropic, token, alice):
    fake_anthropic.script([{"text": "The answer is 42."}], match=token)
    result = run_chat(chat_env, "--user", "alice", f"What is it? {token}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "The answer is 42."
    conversation = Conversation.objects.get(owner=alice)
    assert thread_of(conversation) == [("user", f"What is it? {token}", "complete"), ("assistant", "The answer is 42.", "complete")]
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.cost > 0 and UsageRecord.objects.filter(message=reply, user=alice).count() == 1
    assert "out · $" in result.stderr and f"conversation {conversation.pk}" in result.stderr
    assert "Offline demo" not in result.stderr  # a real key is configured


@pytest.mark.parametrize("args", [["-"], []], ids=["dash", "no-argument"])
def test_one_shot_reads_the_message_from_stdin_and_needs_no_user_when_there_is_one(chat_env, fake_anthropic, token, alice, args):
    fake_anthropic.script([{"text": "Two lines received."}], match=token)
    result = run_chat(chat_env, *args, stdin=f"first line {token}\nsecond line\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Two lines received."
    conversation = Conversation.objects.get(owner=alice)
    assert thread_of(conversation) == [("user", f"first line {token}\nsecond line", "complete"), ("assistant", "Two lines received.", "complete")]


def test_one_shot_json_with_a_chosen_model_and_prompt(chat_env, fake_anthropic, token, alice):
    SystemPrompt.objects.create(name="Pirate", text="Talk like a pirate.")
    fake_anthropic.script([{"text": "Arr, 42."}], match=token)
    result = run_chat(chat_env, "--user", "alice", "--model", "claude-haiku-5-5", "--prompt", "pirate", "--json", f"hi {token}")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    reply = Message.objects.get(conversation__owner=alice, role=Message.Role.ASSISTANT)
    assert data["id"] == reply.pk and data["conversation_id"] == reply.conversation_id
    assert (data["status"], data["text"], data["model"], data["error_code"]) == ("complete", "Arr, 42.", "claude-haiku-5-5", "")
    assert data["cost"] == str(reply.cost) and data["usage"]["output_tokens"] == reply.output_tokens > 0
    conversation = reply.conversation
    assert (conversation.model, conversation.preset.name) == ("claude-haiku-5-5", "Pirate")
    request = next(r for r in fake_anthropic.requests() if token in json.dumps(r["body"]["messages"]))
    assert "Talk like a pirate." in json.dumps(request["body"]["system"])


def test_one_shot_goes_on_with_an_existing_conversation(chat_env, fake_anthropic, token, alice):
    conversation = services.conversation_create(owner=alice)
    fake_anthropic.script([{"text": "First."}], match=f"{token}-1")
    fake_anthropic.script([{"text": "Second."}], match=f"{token}-2")
    for n in (1, 2):
        result = run_chat(chat_env, "--user", "alice", "--conversation", str(conversation.pk), f"turn {token}-{n}")
        assert result.returncode == 0, result.stderr
    assert [text for _, text, _ in thread_of(conversation)] == [f"turn {token}-1", "First.", f"turn {token}-2", "Second."]
    assert roles_sent(fake_anthropic, f"{token}-2") == ["user", "assistant", "user"]  # the history went along


def test_offline_demo_says_so_and_answers_from_its_own_fake(chat_env, alice):
    env = {**chat_env, "ANTHROPIC_API_KEY": "", "FAKE_ANTHROPIC_TPS": "0"}
    env.pop("ANTHROPIC_BASE_URL")
    result = run_chat(env, "--user", "alice", "hello demo")
    assert result.returncode == 0, result.stderr
    assert "Offline demo model" in result.stderr.splitlines()[0]
    assert result.stdout == demo_reply("hello demo")


# --- the interactive chat ---------------------------------------------------------------------


def test_repl_streams_replies_keeps_history_and_answers_its_commands(chat_env, chat_process, fake_anthropic, token, alice):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("5.00"))
    for tag, text in (("a", "Reply one."), ("b", "Reply two."), ("c", "Reply three.")):
        fake_anthropic.script([{"text": text}], match=f"{token}-{tag}")
    chat = chat_process("--user", "alice", "-i")
    chat.send(f"first {token}-a", f"second {token}-b", "/history", "/usage", "/bogus", "/new", f"third {token}-c", "/quit")
    assert chat.finish() == 0, chat.stderr
    out = chat.stdout

    first, second = Conversation.objects.filter(owner=alice).order_by("pk")
    assert thread_of(first) == [
        ("user", f"first {token}-a", "complete"), ("assistant", "Reply one.", "complete"),
        ("user", f"second {token}-b", "complete"), ("assistant", "Reply two.", "complete"),
    ]
    assert thread_of(second) == [("user", f"third {token}-c", "complete"), ("assistant", "Reply three.", "complete")]
    assert roles_sent(fake_anthropic, f"{token}-b") == ["user", "assistant", "user"]

    assert "Reply one.\n[" in out and "Reply two.\n[" in out and "Reply three.\n[" in out
    history = out[out.index(f"Conversation {first.pk}:"):]
    assert history.index(f"you: first {token}-a") < history.index("claude: Reply one.") < history.index(f"you: second {token}-b") < history.index("claude: Reply two.")
    assert "of your $5.00 limit" in out and "This conversation: $" in out
    assert out.index("New conversation") < out.index("Reply three.")
    assert "Unknown command /bogus" in chat.stderr and "/help" in chat.stderr
    assert "Traceback" not in chat.stderr


def test_ctrl_c_stops_the_reply_keeps_the_partial_and_stays_in_the_chat(chat_env, chat_process, fake_anthropic, token, alice):
    words = " ".join(f"w{i:03d}" for i in range(600))
    fake_anthropic.script([{"text": words, "tps": 25}], match=token)
    fake_anthropic.script([{"text": "Still here."}], match=f"{token}-again")
    chat = chat_process("--user", "alice", "-i")
    chat.send(f"go {token}")
    chat.wait_for("w003")
    chat.proc.send_signal(signal.SIGINT)
    chat.wait_for("[stopped")
    assert chat.proc.poll() is None

    reply = Message.objects.get(conversation__owner=alice, role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.STOPPED
    assert 0 < len(reply.content) < len(words) and words.startswith(reply.content)
    assert reply.content + "\n[stopped" in chat.stdout  # exactly what was printed, once

    chat.send(f"again {token}-again")
    chat.wait_for("Still here.")
    chat.send("/quit")
    assert chat.finish() == 0, chat.stderr
    assert "Traceback" not in chat.stderr


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (scripts/runtests.py provides it)")
@pytest.mark.usefixtures("hub_cleanup")
async def test_a_browser_tab_follows_a_terminal_reply_and_its_stop_button_works(chat_process, fake_anthropic, token, alice):
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    words = " ".join(f"w{i:03d}" for i in range(600))
    fake_anthropic.script([{"text": words, "tps": 25}], match=token)
    tab = Socket(alice, conversation.pk)
    await tab.connect()
    chat = chat_process("--user", "alice", "--conversation", str(conversation.pk), "-i")
    chat.send(f"go {token}")
    created = await tab.receive_type("message.created", timeout=TIMEOUT)  # announced to the person's tabs
    assert created["user_message"]["text"] == f"go {token}"
    gid = created["reply"]["generation_id"]
    await tab.receive_type("delta")  # followed through the channel layer, from the terminal's hub
    await tab.send({"type": "stop", "generation_id": gid})
    streamed, end = await tab.follow_to_end(gid)
    assert end["message"]["status"] == "stopped"
    await asyncio.to_thread(chat.wait_for, "[stopped")
    stored = await stored_message(created["reply"]["id"])
    assert streamed == stored.content and stored.content + "\n[stopped" in chat.stdout
    chat.send("/quit")
    assert await asyncio.to_thread(chat.finish) == 0
    await tab.close()


# --- refusals and failures: a plain message and a documented exit code ----------------------------


def test_an_unknown_user_is_a_clear_error(chat_env, alice):
    result = run_chat(chat_env, "--user", "zed", "hello")
    assert result.returncode == 2
    assert "No user named 'zed'" in result.stderr and "Traceback" not in result.stderr


def test_without_user_several_accounts_need_one_named(chat_env, alice, bob):
    result = run_chat(chat_env, "hello")
    assert result.returncode == 2 and "--user" in result.stderr


def test_someone_elses_conversation_does_not_exist(chat_env, alice, bob):
    theirs = services.conversation_create(owner=bob)
    result = run_chat(chat_env, "--user", "alice", "--conversation", str(theirs.pk), "hello")
    assert result.returncode == 2
    assert f"No such conversation: {theirs.pk}" in result.stderr
    assert not Message.objects.exists()


def test_a_model_that_is_not_offered_is_refused_with_the_choices(chat_env, alice):
    result = run_chat(chat_env, "--user", "alice", "--model", "claude-fable-5-1", "hello")  # seeded, disabled
    assert result.returncode == 2
    assert "not offered" in result.stderr and "claude-sonnet-5-5" in result.stderr


def test_over_budget_is_refused_before_anything_is_stored_or_sent(chat_env, fake_anthropic, token, alice):
    SpendLimit.objects.create(user=alice, monthly_limit=Decimal("0"))
    result = run_chat(chat_env, "--user", "alice", f"hello {token}")
    assert result.returncode == 3
    assert "monthly budget" in result.stderr and result.stdout == ""
    assert not Conversation.objects.filter(owner=alice).exists()  # no empty conversation either
    assert not any(token in json.dumps(r["body"]) for r in fake_anthropic.requests())


def test_an_upstream_error_prints_the_stored_message_and_fails(chat_env, fake_anthropic, token, alice):
    fake_anthropic.script([{"status": 500, "repeat": 20}], match=token)
    result = run_chat(chat_env, "--user", "alice", f"hello {token}")
    assert result.returncode == 1
    reply = Message.objects.get(conversation__owner=alice, role=Message.Role.ASSISTANT)
    assert (reply.status, reply.error_code) == ("error", "upstream_error")
    assert f"Error: {reply.error}" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_upstream_error_in_json_mode(chat_env, fake_anthropic, token, alice):
    fake_anthropic.script([{"status": 500, "repeat": 20}], match=token)
    result = run_chat(chat_env, "--user", "alice", "--json", f"hello {token}")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert (data["status"], data["error_code"], data["text"]) == ("error", "upstream_error", "")
    assert data["error"] == Message.objects.get(pk=data["id"]).error
