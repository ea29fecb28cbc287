"""The chat websocket: a thin adapter between a browser tab and the hub.

A socket serves one conversation page. It never owns a generation: it asks the hub to start
one, follows it (locally, or through the channel layer when another process runs it), and
relays frames. Frame shapes are documented in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import branches, errors, fanout, frames, groups, htmlcache, renderpool, runner, selectors, services, wslimits
from .asyncdb import request_db
from .cleantext import has_lone_surrogate, storable
from .errors import ChatError
from .hub import Hub, get_hub
from .models import Conversation, Message
from .sessionguard import NOT_FOUND, UNAUTHORIZED, SessionGuarded

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1_000_000


class ChatConsumer(SessionGuarded, AsyncWebsocketConsumer):
    hub: Hub
    conversation: Conversation

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(UNAUTHORIZED)
            return
        conversation = await self._get_conversation(user, self.scope["url_route"]["kwargs"]["conversation_id"])
        if conversation is None:
            await self.refuse(NOT_FOUND)
            return
        self.user = user
        self.conversation = conversation
        self.group = groups.user_group(user.pk)
        self.following: set[str] = set()
        self.remote: dict[str, str] = {}  # generation id -> the hub channel we follow it through
        self.have: dict[str, int] = {}  # ... and the code points of it this socket has been sent
        self.ended: set[str] = set()
        self.tasks: set[asyncio.Task] = set()  # this socket's background work (_later)
        self.hub = get_hub()
        self.frame_limit = wslimits.FrameLimit(settings.CHATSITE_WS_FRAME_RATE)
        await self.hub.ensure_listening()
        # Without Redis the socket still works with this process's replies; it joins the group
        # when Redis is back (layer_recovered).
        await self._join_group()
        self.hub.sockets.add(user.pk, self)
        await self.accept()
        self.guard_session()  # closes the socket when its session ends (sessionguard)
        await self.send_json({"type": "hello", "conversation_id": conversation.pk, "current_leaf_id": conversation.current_leaf_id})

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "hub"):
            return
        self.unguard_session()
        self.hub.sockets.discard(self.user.pk, self)
        for task in tuple(self.tasks):
            task.cancel()
        for gid in tuple(self.following):
            self.hub.unfollow(gid, self)
        try:
            for gid, hub_channel in self.remote.items():
                await self._layer(self.channel_layer.send(hub_channel, {"type": "hub.unfollow", "generation_id": gid, "reply_channel": self.channel_name}))
            await self._layer(self.channel_layer.group_discard(self.group, self.channel_name))
        except Exception:  # group membership expires by itself (channel layer `expiry`)
            log.warning("Channel layer cleanup failed for %s", self.channel_name, exc_info=True)

    # --- client → server ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data: Any = {}
        verdict = self.frame_limit.check()  # (wslimits: frames per socket)
        if verdict is wslimits.Verdict.CLOSE:
            await self.close(code=wslimits.TOO_MANY_FRAMES)
            return
        try:
            if text_data is None or len(text_data) > MAX_FRAME_BYTES:
                raise ChatError("bad_frame", "That message is too large to send.")
            try:
                data = json.loads(text_data)
            except (ValueError, RecursionError):  # (RecursionError: nested too deep)
                raise ChatError("bad_frame", "The server could not read that request.") from None
            if not isinstance(data, dict):
                raise ChatError("bad_frame", "The server could not read that request.")
            if has_lone_surrogate(data):  # a hand-made \ud800 escape: not text (cleantext)
                raise ChatError("bad_frame", "That request holds characters that are not text (a lone surrogate).")
            if verdict is wslimits.Verdict.REFUSE:
                raise ChatError("rate_limited", f"Too many requests on this connection. Wait {self.frame_limit.wait()} s and try again.")
            handler = self._commands.get(str(data.get("type")))
            if handler is None:
                raise ChatError("unknown_command", "Unknown request.")
            if handler in self._starts:  # (wslimits: replies started per person)
                wait = await self._db(wslimits.reply_start_wait, user_id=self.user.pk)
                if wait is not None:
                    raise ChatError("rate_limited", f"You have started too many replies in a short time. Wait {wait} s and send again; your text is still in the box.")
            await handler(self, data)
        except ChatError as exc:
            await self.send_json({"type": "error", "code": exc.code, "message": exc.message, "client_id": _client_id(data if isinstance(data, dict) else {})})
        except Exception as exc:
            if errors.is_database_outage(exc):
                log.warning("Chat command refused: the database is unreachable (%s)", exc)
                refusal = errors.database_unavailable()
                await self.send_json({"type": "error", "code": refusal.code, "message": refusal.message, "client_id": _client_id(data if isinstance(data, dict) else {})})
                return
            # Keep the socket (and the person's typed text) alive; say it plainly.
            log.exception("Chat command failed")
            message = "Something went wrong on the server. Your message is still in the box; try again."
            await self.send_json({"type": "error", "code": "internal", "message": message, "client_id": _client_id(data if isinstance(data, dict) else {})})

    async def cmd_send(self, data: dict[str, Any]) -> None:
        # Stored with the other sends arriving at the same time (batching: group commit).
        request = services.SendRequest(conversation=self.conversation, content=data.get("content"), runner=self.hub.channel_name)
        user_message, reply, spec = await self.hub.sends.submit(request)
        await self._start(data, reply, spec, user_message)

    async def cmd_regenerate(self, data: dict[str, Any]) -> None:
        reply, spec = await self._db(services.reply_regenerate, conversation=self.conversation, message_id=_int(data.get("message_id")), runner=self.hub.channel_name)
        await self._start(data, reply, spec)

    async def cmd_continue(self, data: dict[str, Any]) -> None:
        reply, spec = await self._db(services.reply_continue, conversation=self.conversation, message_id=_int(data.get("message_id")), runner=self.hub.channel_name)
        await self._start(data, reply, spec)

    async def _start(self, data: dict[str, Any], reply: Message, spec: services.GenerationSpec, user_message: Message | None = None) -> None:
        # The reply is committed: start Claude first (time to first token), then tell this tab
        # (before it can receive any delta: it follows only after), then the person's other sockets.
        runner.start(self.hub, spec)
        payload = self._created_payload(data, reply, user_message)
        await self.send_json(payload)
        await self._follow(str(spec.generation_id), 0)
        try:
            event = {"type": "chat.message_created", "payload": payload, "origin": self.channel_name}
            await fanout.tell_user(self.channel_layer, self.hub.sockets, self.user.pk, event, skip=self.channel_name, redis_ok=self.hub.redis_ok)
        except Exception:  # other tabs catch up on their next follow; never fail the send for it
            log.exception("Could not announce a new reply to the person's other sockets")

    async def cmd_stop(self, data: dict[str, Any]) -> None:
        gid = str(data.get("generation_id", ""))
        if self._local_run(gid) is not None:
            self.hub.stop(gid)
            return
        message = await self._db(_streaming_reply, conversation_id=self.conversation.pk, generation_id=gid)
        if message is None:
            raise ChatError("not_running", "That reply has already finished.")
        if message.runner:
            try:
                await self._layer(self.channel_layer.send(message.runner, {"type": "hub.stop", "generation_id": gid}))
            except Exception:
                log.warning("Could not send stop for %s to %s", gid, message.runner, exc_info=True)
                raise ChatError("unreachable", "The server process writing this reply cannot be reached right now. Try Stop again in a moment.") from None

    async def cmd_follow(self, data: dict[str, Any]) -> None:
        await self._follow(str(data.get("generation_id", "")), max(0, _int(data.get("offset"))))

    async def cmd_ping(self, data: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def cmd_edit(self, data: dict[str, Any]) -> None:
        """A new version of one of the person's messages, answered like a send (see branches)."""
        user_message, reply, spec = await self._db(
            branches.message_edit, conversation=self.conversation, message_id=_int(data.get("message_id")),
            content=data.get("content"), runner=self.hub.channel_name,
        )
        await self._start(data, reply, spec, user_message)

    async def cmd_switch_branch(self, data: dict[str, Any]) -> None:
        """Show another version: this socket and the person's other tabs on it re-render the thread."""
        payload = await self._db(_switch_branch, conversation=self.conversation, message_id=_int(data.get("message_id")), client_id=_client_id(data))
        await self.send_json(payload)
        try:
            event = {"type": "chat.thread", "payload": payload, "origin": self.channel_name}
            await fanout.tell_user(self.channel_layer, self.hub.sockets, self.user.pk, event, skip=self.channel_name, redis_ok=self.hub.redis_ok)
        except Exception:  # other tabs resync on their next reconnect (hello.current_leaf_id)
            log.exception("Could not announce a branch switch to the person's other sockets")

    _commands = {
        "send": cmd_send, "regenerate": cmd_regenerate, "continue": cmd_continue,
        "stop": cmd_stop, "follow": cmd_follow, "ping": cmd_ping,
        "edit": cmd_edit, "switch_branch": cmd_switch_branch,
    }
    _starts = (cmd_send, cmd_regenerate, cmd_continue, cmd_edit)  # each starts a reply

    # --- following a generation ----------------------------------------------------------

    async def _follow(self, gid: str, offset: int) -> None:
        if gid in self.ended:
            return
        if self._local_run(gid) is not None and await self.hub.follow(gid, self, offset):
            self.following.add(gid)
            return
        message = await self._db(_reply_by_generation, conversation_id=self.conversation.pk, generation_id=gid)
        if message is None:
            raise ChatError("not_found", "That reply does not exist.")
        if message.status == Message.Status.STREAMING and message.runner and message.runner != self.hub.channel_name:
            # (Again, for gap repair: the runner resends from offset.) If Redis cannot take it
            # now, the follow is made again when it is back (layer_recovered).
            self.remote[gid] = message.runner
            self.have[gid] = offset
            try:
                await self._layer(self.channel_layer.send(message.runner, {"type": "hub.follow", "generation_id": gid, "offset": offset, "reply_channel": self.channel_name}))
            except Exception as exc:  # noqa: BLE001
                log.warning("Could not follow %s through %s (%s); again when Redis is back", gid, message.runner, type(exc).__name__)
            return
        if message.status != Message.Status.STREAMING and gid not in self.ended:
            # Finished already: the text the socket is missing, then the one final frame.
            await self._fill(gid, offset, message.content)
            html = await renderpool.render(message.content)
            await self._send_end(frames.end(message=message, conversation_title=self.conversation.title, html=html))

    def _local_run(self, gid: str):
        run = self.hub.get(gid)
        return run if run is not None and run.spec.conversation_id == self.conversation.pk else None

    async def deliver(self, frame: str, *, final: bool, generation_id: str) -> None:
        """Called by the hub (or relayed from another process) with a prebuilt frame."""
        if final:
            if generation_id in self.ended:
                return
            self.ended.add(generation_id)
            self.following.discard(generation_id)
            self.remote.pop(generation_id, None)
            self.have.pop(generation_id, None)
        await self.send(text_data=frame)

    async def _fill(self, gid: str, have: int, content: str) -> None:
        """The stored text from `have` on, before an end that may come without it."""
        if have < len(content) and gid not in self.ended:
            await self.send(text_data=frames.delta(gid, have, content[have:]))

    async def _send_end(self, end: dict[str, Any]) -> None:
        await self.deliver(frames.dumps(end), final=True, generation_id=end["generation_id"])

    def _created_payload(self, data: dict[str, Any], reply: Message, user_message: Message | None) -> dict[str, Any]:
        self.conversation.title = reply.conversation.title  # the first message names the conversation
        return {
            "type": "message.created",
            "client_id": _client_id(data),
            "conversation_id": self.conversation.pk,
            "conversation_title": self.conversation.title,
            "user_message": frames.message_dict(user_message) if user_message else None,
            "reply": frames.message_dict(reply),
        }

    # --- channel layer events ------------------------------------------------------------

    async def chat_message_created(self, event: dict[str, Any]) -> None:
        if event.get("origin") == self.channel_name:
            return
        payload = event["payload"]
        await self.send_json(payload)
        if payload["conversation_id"] == self.conversation.pk and payload["reply"]["generation_id"]:
            gid = payload["reply"]["generation_id"]
            try:
                await self._follow(gid, 0)
            except Exception as exc:
                if not errors.is_database_outage(exc):
                    raise
                self._later(self._follow_when_the_database_is_back(gid))

    async def _follow_when_the_database_is_back(self, gid: str) -> None:
        """A reply announced while the database was unreachable (its runner holds it until it is
        stored): follow it as soon as the database answers again."""
        delay = 0.5
        while gid not in self.ended:
            await asyncio.sleep(delay)
            try:
                await self._follow(gid, self.have.get(gid, 0))
                return
            except Exception as exc:  # noqa: BLE001
                if not errors.is_database_outage(exc):
                    log.warning("Could not follow %s", gid, exc_info=True)
                    return
            delay = min(delay * 2, 5.0)

    def _later(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def chat_thread(self, event: dict[str, Any]) -> None:
        """Another tab switched branches: follow it when it is this conversation."""
        if event.get("origin") != self.channel_name and event["payload"]["conversation_id"] == self.conversation.pk:
            await self.send_json(event["payload"])

    async def chat_generation_end(self, event: dict[str, Any]) -> None:
        end = event["end"]
        gid = end["generation_id"]
        if end["conversation_id"] != self.conversation.pk:
            await self.send(text_data=frames.dumps(end))  # another conversation: the sidebar announces it
        elif gid in self.following or gid in self.ended:
            await self._send_end(end)  # (its follow already delivered it: sent once)
        elif gid in self.remote:
            # Followed through another process, which relays the end before announcing it: here
            # first means that relay did not arrive (its follow was on its way as the reply
            # ended, or Redis dropped frames). The text it lacks comes from the store first.
            message = await self._db(_reply_by_generation, conversation_id=self.conversation.pk, generation_id=gid)
            if message is not None:
                await self._fill(gid, self.have.get(gid, 0), message.content)
            await self._send_end(end)
        else:
            # Not following it (yet): e.g. a socket that has just connected and whose `follow`
            # is on its way. Its text first, as a follow gets it, so no client sees the final
            # frame before text it is missing.
            message = await self._db(_reply_by_generation, conversation_id=self.conversation.pk, generation_id=gid)
            if message is not None and message.content and gid not in self.ended:
                await self.send(text_data=frames.delta(gid, 0, message.content))
            await self._send_end(end)

    async def chat_conversation_update(self, event: dict[str, Any]) -> None:
        """A Celery task named a conversation or summarised it: the sidebar and page follow."""
        frame = {"type": "conversation.updated", "conversation_id": event["conversation_id"]}
        for key in ("title", "summarised_upto", "pinned", "archived", "deleted"):  # the last three: workspace.tell_owner
            if key in event:
                frame[key] = event[key]
        if event.get("title") and event["conversation_id"] == self.conversation.pk:
            self.conversation.title = event["title"]
        await self.send_json(frame)

    async def relay_frame(self, event: dict[str, Any]) -> None:
        """A frame of a reply another process runs. The relay is at-most-once (channels-redis):
        a part of the text that went missing is asked for again before anything after it is
        passed on, and the end comes only after the whole text (from the store if need be)."""
        gid = event["generation_id"]
        if gid in self.ended:
            return
        have = self.have.get(gid, 0)
        if "offset" in event:
            if event["offset"] > have:  # a gap: the runner resends from what we have
                runner = self.remote.get(gid)
                if runner:
                    try:
                        await self._layer(self.channel_layer.send(runner, {"type": "hub.follow", "generation_id": gid, "offset": have, "reply_channel": self.channel_name}))
                    except Exception as exc:  # noqa: BLE001 - asked again when Redis is back
                        log.warning("Could not ask %s to resend %s (%s)", runner, gid, type(exc).__name__)
                return
            self.have[gid] = max(have, event["upto"])
        elif event["final"] and have < event.get("length", 0):
            message = await self._db(_reply_by_generation, conversation_id=self.conversation.pk, generation_id=gid)
            if message is not None:
                await self._fill(gid, have, message.content)
        await self.deliver(event["frame"], final=event["final"], generation_id=gid)

    async def relay_gone(self, event: dict[str, Any]) -> None:
        gid = event["generation_id"]
        self.remote.pop(gid, None)
        await self._follow(gid, self.have.pop(gid, 0))

    async def layer_recovered(self, event: dict[str, Any]) -> None:
        """Redis is back after an outage (hub watcher). Rejoin the person's group (a restarted
        Redis forgot it), ask again for the replies followed through other processes from what
        this socket has, and send `hello` again: a client that does not know its
        `current_leaf_id` missed messages meanwhile and reloads the thread."""
        await self._join_group()
        for gid in tuple(self.remote):
            try:
                await self._follow(gid, self.have.get(gid, 0))
            except ChatError:
                self.remote.pop(gid, None)
        leaf = await self._db(_current_leaf_id, conversation_id=self.conversation.pk)
        await self.send_json({"type": "hello", "conversation_id": self.conversation.pk, "current_leaf_id": leaf})

    # --- helpers -------------------------------------------------------------------------

    async def _layer(self, call: Awaitable[Any]) -> Any:
        """A channel-layer call that gives up after a while: a hung Redis must not hang the socket."""
        return await asyncio.wait_for(call, settings.CHATSITE_RELAY_SEND_TIMEOUT_SECONDS)

    async def _join_group(self) -> None:
        if not self.hub.redis_ok:
            return
        try:
            await self._layer(self.channel_layer.group_add(self.group, self.channel_name))
        except Exception as exc:  # noqa: BLE001 - joined when Redis is back (layer_recovered)
            log.warning("Could not join %s (%s); again when Redis is back", self.group, type(exc).__name__)

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=frames.dumps(payload))

    async def _db(self, func, **kwargs):
        # Not Channels' thread-sensitive default: hundreds of sockets must not queue behind one
        # ORM thread (see asyncdb).
        return await request_db(func)(**kwargs)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch runs close_old_connections in the thread-sensitive executor before
        # every message, a thread hop per frame; this consumer does no ORM work on the loop
        # (asyncdb's wrappers manage connections), so go straight to the handler.
        name = message["type"].replace(".", "_")
        handler = None if name.startswith("_") else getattr(self, name, None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if name.startswith("websocket_"):
            await handler(message)
            return
        try:
            await handler(message)
        except Exception:  # an event from elsewhere in the server must not cost the person the socket
            log.exception("Socket %s could not handle %s", self.channel_name, message["type"])

    async def _get_conversation(self, user, conversation_id: Any) -> Conversation | None:
        return await self._db(_owned_conversation, user=user, conversation_id=conversation_id)


def _owned_conversation(*, user, conversation_id: Any) -> Conversation | None:
    try:
        return selectors.conversation_get_for_user(user=user, conversation_id=int(conversation_id))
    except Exception:
        return None


def _reply_by_generation(*, conversation_id: int, generation_id: str) -> Message | None:
    try:
        return Message.objects.filter(conversation_id=conversation_id, generation_id=generation_id).first()
    except Exception:  # a malformed UUID
        return None


def _current_leaf_id(*, conversation_id: int) -> int | None:
    return Conversation.objects.filter(pk=conversation_id).values_list("current_leaf_id", flat=True).first()


def _streaming_reply(*, conversation_id: int, generation_id: str) -> Message | None:
    message = _reply_by_generation(conversation_id=conversation_id, generation_id=generation_id)
    return message if message is not None and message.status == Message.Status.STREAMING else None


def _switch_branch(*, conversation: Conversation, message_id: int, client_id: str) -> dict[str, Any]:
    thread = branches.branch_switch(conversation=conversation, message_id=message_id)
    messages = [frames.message_dict(m, html=False) for m in thread]
    # Finished replies as sanitised HTML, from the rendered-HTML cache where it can (as the page).
    finished = [(data, m.content) for data, m in zip(messages, thread) if "html" in data]
    for (data, _), html in zip(finished, htmlcache.render_markdown_many([text for _, text in finished])):
        data["html"] = html
    return {
        "type": "thread",
        "client_id": client_id,
        "conversation_id": conversation.pk,
        "current_leaf_id": thread[-1].pk if thread else None,
        "messages": messages,
    }


def _client_id(data: dict[str, Any]) -> str:
    return storable(str(data.get("client_id", ""))[:64])


_ID_LIMIT = 2**63  # what a database integer holds


def _int(value: Any) -> int:
    """A whole number from a frame (an id, an offset): never a float (`Infinity`, `1e400`)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ChatError("bad_frame", "The server could not read that request.")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise ChatError("bad_frame", "The server could not read that request.") from None
    if not -_ID_LIMIT < number < _ID_LIMIT:
        raise ChatError("bad_frame", "The server could not read that request.")
    return number
