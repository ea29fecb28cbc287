"""Search across the person's own conversations: titles and message text.

PostgreSQL: full-text search (`websearch_to_tsquery`: words, "quoted phrases", -exclusions,
OR) ranked with `ts_rank`, served by GIN expression indexes (migration 0006); `ts_headline`
tells which words matched. When full-text finds nothing (a partial word, a code identifier,
only stop words), a substring match is tried. SQLite: the substring match only (every word
must appear; ranked by how often).

Results are owner-scoped, leave deleted conversations out and mark archived ones. A snippet
is plain text split into (text, matched) parts: templates escape it, the JS sets it with
textContent, so message text never becomes markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import F, FloatField, Q, QuerySet, Value
from django.db.models.functions import Cast, Length, Lower, Replace

from .cleantext import storable
from .models import Conversation, Message

# The text search configuration of the GIN indexes: a query must use the same one to use them.
SEARCH_CONFIG = "english"
MAX_QUERY_CHARS = 200
MAX_TERMS = 8
MAX_CONVERSATIONS = 30
HITS_PER_CONVERSATION = 3
CANDIDATE_MESSAGES = 300
SNIPPET_CHARS = 180
# A title that matches says more about a conversation than a word somewhere in it.
TITLE_BOOST = 2.0

# Private-use characters mark the matches in ts_headline output; they never reach a page.
_START, _STOP = "\ue000", "\ue001"
_PUNCTUATION = ".,;:!?()[]{}<>'\"`«»“”‘’"


@dataclass(frozen=True)
class Snippet:
    parts: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.parts)

    def as_json(self) -> list[list]:
        return [[t, m] for t, m in self.parts]


@dataclass
class MessageHit:
    message_id: int
    role: str
    created_at: datetime
    rank: float
    snippet: Snippet = field(default_factory=lambda: Snippet(()))

    def as_json(self, conversation_id: int) -> dict:
        return {
            "message_id": self.message_id, "role": self.role, "created_at": self.created_at.isoformat(),
            "url": f"/chat/{conversation_id}/#m{self.message_id}", "snippet": self.snippet.as_json(),
        }


@dataclass
class ConversationResult:
    conversation_id: int
    title: Snippet
    archived: bool
    updated_at: datetime
    rank: float
    title_matched: bool
    hits: list[MessageHit]

    @property
    def url(self) -> str:
        return f"/chat/{self.conversation_id}/"

    def as_json(self) -> dict:
        return {
            "conversation_id": self.conversation_id, "url": self.url, "title": self.title.as_json(),
            "archived": self.archived, "updated_at": self.updated_at.isoformat(), "title_matched": self.title_matched,
            "hits": [h.as_json(self.conversation_id) for h in self.hits],
        }


def search_for_user(*, user: AbstractBaseUser, query: str) -> list[ConversationResult]:
    """The person's conversations matching `query`, best first, each with up to three messages."""
    query = storable(" ".join((query or "").split())[:MAX_QUERY_CHARS])  # (cleantext: no NUL in SQL)
    if not query or not getattr(user, "is_authenticated", False):
        return []
    if connection.vendor == "postgresql":
        results = _full_text(user, query)
        if results:
            return results
    return _substring(user, query)


def _messages_of(user: AbstractBaseUser) -> QuerySet[Message]:
    return Message.objects.filter(conversation__owner=user, conversation__deleted_at__isnull=True).exclude(content="")


def _conversations_of(user: AbstractBaseUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, deleted_at__isnull=True)


def _pick(message_rows: list[tuple[int, int, float]], title_rows: list[tuple[int, float]]) -> tuple[list[int], dict[int, list[tuple[int, float]]], dict[int, float], dict[int, float]]:
    """Best conversations first (their title's rank, boosted, or their best message's), and
    the best few messages of each."""
    hits: dict[int, list[tuple[int, float]]] = {}
    for message_id, conversation_id, rank in message_rows:  # already best first
        mine = hits.setdefault(conversation_id, [])
        if len(mine) < HITS_PER_CONVERSATION:
            mine.append((message_id, float(rank)))
    titles = {cid: float(rank) * TITLE_BOOST for cid, rank in title_rows}
    scores = {cid: max(titles.get(cid, 0.0), hits[cid][0][1] if hits.get(cid) else 0.0) for cid in {*hits, *titles}}
    # Ties (equal ranks) keep the order the database gave: newest first.
    order = {cid: i for i, cid in enumerate(dict.fromkeys([*(c for c, _ in title_rows), *(m[1] for m in message_rows)]))}
    chosen = sorted(scores, key=lambda cid: (-scores[cid], order[cid]))[:MAX_CONVERSATIONS]
    return chosen, hits, titles, scores


def _assemble(chosen: list[int], hits: dict[int, list[tuple[int, float]]], titles: dict[int, float], scores: dict[int, float],
              conversations: dict[int, dict], snippets: dict[int, tuple[str, datetime, Snippet]], title_snippet) -> list[ConversationResult]:
    results = []
    for cid in chosen:
        row = conversations.get(cid)
        if row is None:
            continue
        message_hits = []
        for message_id, rank in hits.get(cid, []):
            role, created_at, snippet = snippets[message_id]
            message_hits.append(MessageHit(message_id=message_id, role=role, created_at=created_at, rank=rank, snippet=snippet))
        results.append(ConversationResult(
            conversation_id=cid, title=title_snippet(row), archived=row["archived_at"] is not None, updated_at=row["updated_at"],
            rank=scores[cid], title_matched=cid in titles, hits=message_hits,
        ))
    return results


# --- PostgreSQL full-text search -------------------------------------------------------------


def _full_text(user: AbstractBaseUser, query: str) -> list[ConversationResult]:
    tsquery = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    # The same expressions as the GIN indexes of migration 0005: the planner matches them.
    content = SearchVector("content", config=SEARCH_CONFIG)
    title = SearchVector("title", config=SEARCH_CONFIG)
    message_rows = list(
        _messages_of(user).annotate(document=content).filter(document=tsquery)
        .annotate(rank=SearchRank(content, tsquery)).order_by("-rank", "-created_at", "-id")
        .values_list("pk", "conversation_id", "rank")[:CANDIDATE_MESSAGES]
    )
    title_rows = list(
        _conversations_of(user).annotate(document=title).filter(document=tsquery)
        .annotate(rank=SearchRank(title, tsquery)).order_by("-rank", "-updated_at", "-id")
        .values_list("pk", "rank")[:MAX_CONVERSATIONS]
    )
    if not message_rows and not title_rows:
        return []
    chosen, hits, titles, scores = _pick(message_rows, title_rows)
    # ts_headline says which words matched (other forms too: "runs" finds "running"), but its
    # text drops anything that looks like an HTML tag: the snippet itself is cut from the
    # message as stored, around those words.
    marks = {"start_sel": _START, "stop_sel": _STOP}
    plain_terms = parse_terms(query)[0]
    conversations = {
        row["pk"]: row for row in _conversations_of(user).filter(pk__in=chosen)
        .annotate(headline=SearchHeadline("title", tsquery, config=SEARCH_CONFIG, highlight_all=True, **marks))
        .values("pk", "title", "archived_at", "updated_at", "headline")
    }
    wanted = [message_id for cid in chosen for message_id, _ in hits.get(cid, [])]
    snippets = {
        row["pk"]: (row["role"], row["created_at"], snippet_around(row["content"], _matched_words(row["headline"]) or plain_terms, whole_words=True))
        for row in _messages_of(user).filter(pk__in=wanted).annotate(headline=SearchHeadline(
            "content", tsquery, config=SEARCH_CONFIG, max_words=35, min_words=15, max_fragments=3, **marks,
        )).values("pk", "role", "created_at", "content", "headline")
    }

    def title_snippet(row: dict) -> Snippet:
        if not row["title"]:
            return Snippet((("New chat", False),))
        return highlight(row["title"], _matched_words(row["headline"]) or plain_terms, whole_words=True)

    return _assemble(chosen, hits, titles, scores, conversations, snippets, title_snippet)


def _matched_words(headline: str | None) -> list[str]:
    """The words ts_headline marked (between the private-use marks)."""
    pieces = re.split(f"[{_START}{_STOP}]", headline or "")
    return list(dict.fromkeys(p.strip() for p in pieces[1::2] if p.strip()))


# --- Substring match (SQLite; PostgreSQL when full-text finds nothing) -------------------------


def parse_terms(query: str) -> tuple[list[str], list[str]]:
    """Words and "quoted phrases" that must all appear, and -words that must not (the
    websearch syntax, with OR read as AND)."""
    include: list[str] = []
    exclude: list[str] = []
    for m in re.finditer(r'(-?)"([^"]*)"|(\S+)', query):
        if m.group(3) is not None:
            word = m.group(3)
            negative = word.startswith("-") and len(word) > 1
            word = word[1:] if negative else word
            if word.lower() == "or":
                continue
            word = word.strip(_PUNCTUATION) or word
        else:
            negative, word = bool(m.group(1)), " ".join(m.group(2).split())
        if word:
            (exclude if negative else include).append(word)
    return list(dict.fromkeys(include))[:MAX_TERMS], list(dict.fromkeys(exclude))[:MAX_TERMS]


def _all_of(field: str, include: list[str], exclude: list[str]) -> tuple[Q, Q]:
    must = Q()
    for term in include:
        must &= Q(**{f"{field}__icontains": term})
    must_not = Q()
    for term in exclude:
        must_not |= Q(**{f"{field}__icontains": term})
    return must, must_not


def _occurrences(field: str, terms: list[str]):
    """How often the terms occur (case-insensitively, as the match): the substring rank."""
    total = None
    for term in terms:
        lowered = Lower(F(field))
        count = Cast(Length(lowered) - Length(Replace(lowered, Value(term.lower()), Value(""))), FloatField()) / Value(float(len(term)))
        total = count if total is None else total + count
    return total


def _substring(user: AbstractBaseUser, query: str) -> list[ConversationResult]:
    include, exclude = parse_terms(query)
    if not include:
        return []
    must, must_not = _all_of("content", include, exclude)
    messages = _messages_of(user).filter(must)
    if exclude:
        messages = messages.exclude(must_not)
    message_rows = list(
        messages.annotate(rank=_occurrences("content", include)).order_by("-rank", "-created_at", "-id")
        .values_list("pk", "conversation_id", "rank")[:CANDIDATE_MESSAGES]
    )
    must, must_not = _all_of("title", include, exclude)
    titled = _conversations_of(user).filter(must)
    if exclude:
        titled = titled.exclude(must_not)
    # Any title match outranks any message match (ranks of messages are occurrence counts).
    title_rows = [(pk, 1_000_000.0) for pk in titled.order_by("-updated_at", "-id").values_list("pk", flat=True)[:MAX_CONVERSATIONS]]
    if not message_rows and not title_rows:
        return []
    chosen, hits, titles, scores = _pick(message_rows, title_rows)
    conversations = {row["pk"]: row for row in _conversations_of(user).filter(pk__in=chosen).values("pk", "title", "archived_at", "updated_at")}
    wanted = [message_id for cid in chosen for message_id, _ in hits.get(cid, [])]
    snippets = {
        row["pk"]: (row["role"], row["created_at"], snippet_around(row["content"], include))
        for row in _messages_of(user).filter(pk__in=wanted).values("pk", "role", "created_at", "content")
    }

    def title_snippet(row: dict) -> Snippet:
        return highlight(row["title"], include) if row["title"] else Snippet((("New chat", False),))

    return _assemble(chosen, hits, titles, scores, conversations, snippets, title_snippet)


def _pattern(terms: list[str], whole_words: bool = False) -> re.Pattern[str] | None:
    terms = [t for t in terms if t]
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    if whole_words:
        alternatives = rf"(?<!\w)(?:{alternatives})(?!\w)"
    return re.compile(alternatives, re.IGNORECASE)


def highlight(text: str, terms: list[str], *, whole_words: bool = False) -> Snippet:
    """`text` split into parts, the matches of `terms` (case-insensitive) marked."""
    pattern = _pattern(terms, whole_words)
    if pattern is None:
        return Snippet(((text, False),)) if text else Snippet(())
    parts: list[tuple[str, bool]] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() > at:
            parts.append((text[at : m.start()], False))
        parts.append((m.group(0), True))
        at = m.end()
    if at < len(text):
        parts.append((text[at:], False))
    return Snippet(tuple(parts))


def snippet_around(text: str, terms: list[str], width: int = SNIPPET_CHARS, *, whole_words: bool = False) -> Snippet:
    """About `width` characters of `text` around its first match, cut at spaces, matches marked."""
    text = " ".join((text or "").split())
    pattern = _pattern(terms, whole_words)
    first = pattern.search(text) if pattern else None
    start = 0
    if first is not None and first.start() > width // 3:
        start = first.start() - width // 3
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < first.start() else start
    end = start + width
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > (first.end() if first and first.end() <= end else start) else end
    window = highlight(text[start:end], terms, whole_words=whole_words)
    parts = list(window.parts)
    if start > 0:
        parts.insert(0, ("…", False))
    if end < len(text):
        parts.append(("…", False))
    return Snippet(tuple(parts))
