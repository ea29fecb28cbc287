import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

_PRICE = {"max_digits": 10, "decimal_places": 4}
_MONEY = {"max_digits": 14, "decimal_places": 8, "default": Decimal(0)}


class LLMModel(models.Model):
    """A Claude model people may chat with, with its limits and its prices.

    Prices are USD per million tokens, as Anthropic publishes them. A reply's cost is computed
    from these at the time of the reply and stored with it, so editing a price never rewrites
    history.
    """

    model_id = models.CharField(max_length=100, unique=True, help_text="The API model id, e.g. claude-sonnet-5-5.")
    display_name = models.CharField(max_length=100)
    context_window = models.PositiveIntegerField(default=200_000, help_text="Tokens.")
    max_output_tokens = models.PositiveIntegerField(default=8192, help_text="The model's output limit, in tokens.")
    input_price = models.DecimalField(**_PRICE, help_text="USD per million input tokens.")
    output_price = models.DecimalField(**_PRICE, help_text="USD per million output tokens.")
    cache_write_5m_price = models.DecimalField(**_PRICE, help_text="USD per million tokens written to the 5-minute cache.")
    cache_write_1h_price = models.DecimalField(**_PRICE, help_text="USD per million tokens written to the 1-hour cache.")
    cache_read_price = models.DecimalField(**_PRICE, help_text="USD per million tokens read from the cache.")
    # Some models bill a request whose prompt (input + cache tokens) passes a threshold at a
    # higher rate, on every token of that request.
    long_prompt_threshold = models.PositiveIntegerField(null=True, blank=True, help_text="Prompt tokens above which the long-prompt rates apply; blank for none.")
    long_prompt_multiplier = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal(1), help_text="Every rate is multiplied by this for a long prompt.")
    min_cache_tokens = models.PositiveIntegerField(default=1024, help_text="Shortest prefix the model caches; shorter ones are billed as plain input.")
    # How the model behaves, as Anthropic documents it (seeded from catalog.CAPABILITIES). The
    # defaults suit a model newer than the catalogue: no prefill, thinks unless told otherwise.
    accepts_prefill = models.BooleanField(
        default=False,
        help_text="Accepts a request that ends with Claude's own turn (prefill). Off: Continue sends the kept text followed by a short request to carry on.",
    )
    thinks_by_default = models.BooleanField(
        default=True,
        help_text="Thinks before answering unless told not to; thinking tokens count toward max_tokens. Titles and summaries then turn thinking off or leave room for it.",
    )
    thinking_off = models.CharField(
        max_length=16, blank=True, default="",
        choices=[("", "Cannot be turned off"), ("disabled", "disabled"), ("between_tools", "between_tools")],
        help_text="The thinking type that turns thinking off for titles and summaries (at effort high or lower).",
    )
    tokenizer_factor = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("1.30"),
        help_text="Tokens this model counts for text the older Claude tokenizer counts as one (1.30 for Claude 4.7 and later). Used to estimate prompt sizes.",
    )
    enabled = models.BooleanField(default=True, help_text="Offered to people starting a conversation.")
    is_default = models.BooleanField(default=False, help_text="Preselected for new conversations.")
    is_utility = models.BooleanField(default=False, help_text="The cheap model used for summaries and titles.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "display_name"]
        verbose_name = "Claude model"
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_llm_model"),
            models.UniqueConstraint(fields=["is_utility"], condition=Q(is_utility=True), name="one_utility_llm_model"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.model_id


class SystemPrompt(models.Model):
    """An admin-managed preset a person can start a conversation with."""

    name = models.CharField(max_length=100, unique=True)
    text = models.TextField(blank=True)
    is_default = models.BooleanField(default=False, help_text="Preselected for new conversations.")
    is_active = models.BooleanField(default=True, help_text="Offered when starting a conversation.")
    cache_enabled = models.BooleanField(default=True, help_text="Send the prompt and the conversation prefix as cacheable blocks.")
    cache_ttl = models.CharField(
        max_length=2, choices=[("5m", "5 minutes"), ("1h", "1 hour")], default="5m",
        help_text="Cache lifetime. 1-hour writes cost more (2× input instead of 1.25×) but survive longer pauses.",
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="system_prompts",
        help_text="Only members of these groups may use this prompt. None selected: everyone.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_system_prompt"),
        ]

    def __str__(self) -> str:
        return self.name


class SystemPromptVersion(models.Model):
    """Every saved text of a system prompt, kept forever: who changed it, when, and what it said.
    Conversations record the version they started with."""

    prompt = models.ForeignKey(SystemPrompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    text = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [models.UniqueConstraint(fields=["prompt", "number"], name="one_number_per_prompt_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.number}"


class Conversation(models.Model):
    class TitleSource(models.TextChoices):
        NONE = ""
        FIRST_MESSAGE = "first_message"
        AUTO = "auto"
        USER = "user"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    # Who named it: an automatic title never overwrites one the person set.
    title_source = models.CharField(max_length=16, choices=TitleSource.choices, blank=True, default=TitleSource.NONE)
    model = models.CharField(max_length=100)
    # The preset it was started from, and a snapshot of its text: editing a preset later
    # must not rewrite the instructions of conversations already under way.
    preset = models.ForeignKey(SystemPrompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True)
    prompt_version = models.ForeignKey(SystemPromptVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    # Workspace state: pinned on top, archived out of the main list, deleted (undoable for a
    # few seconds, then purged).
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The message the person currently sees at the end of the thread; the thread is the
    # parent chain from here, so regenerate/edit branches need no schema change.
    current_leaf = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Tokens of the last reply's whole context (prompt incl. cache + output): what the next
    # request starts from. Drives background compaction.
    context_tokens = models.PositiveIntegerField(default=0)
    # The summary that reply's request used: context_tokens describes that layout.
    context_summary = models.ForeignKey("Summary", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A compaction worker's claim: who holds it (host:pid:token) and when it last said so (the
    # holder renews it while it works); a claim whose holder is gone may be taken over.
    compaction_claimed_at = models.DateTimeField(null=True, blank=True)
    compaction_claimed_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"]),
            # The sidebar's keyset pages (conversations.sidebar); search's GIN indexes are
            # PostgreSQL-only and live in migration 0006 alone.
            models.Index(
                fields=["owner", "-updated_at", "-id"], condition=Q(deleted_at__isnull=True, archived_at__isnull=True),
                name="conversation_main_list",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    @property
    def display_title(self) -> str:
        return self.title or "New chat"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    model = models.CharField(max_length=100, blank=True)

    # One id per assistant reply: frames carry it so a retry can never show another reply's text.
    generation_id = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    # Which process runs the generation and when it last proved alive (for the reaper).
    runner = models.CharField(max_length=120, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    # The 1-hour share of cache_creation_input_tokens (billed at a different rate).
    cache_creation_1h_input_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**_MONEY, help_text="USD, at the prices of the time of the reply.")
    # Said under the reply when Claude did not see the whole thread (e.g. trimmed to fit).
    context_note = models.CharField(max_length=300, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    # A human explanation shown in the UI; never a raw exception string.
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=32, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @staticmethod
    def new_generation_id() -> uuid.UUID:
        return uuid.uuid4()


class Summary(models.Model):
    """A rolling summary of a conversation's thread up to and including `upto`.

    Requests send the newest summary on the visible thread plus the messages after it. The
    messages themselves are never touched: the person still sees and can read everything.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="summaries")
    upto = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    text = models.TextField()
    model = models.CharField(max_length=100)
    covered_messages = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "summaries"
        constraints = [models.UniqueConstraint(fields=["conversation", "upto"], name="one_summary_per_cut")]

    def __str__(self) -> str:
        return f"Summary of conversation {self.conversation_id} up to message {self.upto_id}"


class UsageRecord(models.Model):
    """One billed call to Claude: a reply, a summary or a title. The ledger budgets and the
    usage page add up; it outlives deleted conversations so spend cannot be undone."""

    class Kind(models.TextChoices):
        REPLY = "reply"
        SUMMARY = "summary"
        TITLE = "title"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**_MONEY, help_text="USD at the prices of the time.")
    # What the same call would have cost with every cache token billed as plain input.
    uncached_cost = models.DecimalField(**_MONEY)
    # Written before a summary or title call and replaced by the real usage when the answer
    # comes: a worker killed mid-call leaves this estimate (at most max_tokens of output),
    # since Anthropic bills a call that completes upstream even when nobody reads the answer.
    estimated = models.BooleanField(default=False, help_text="Usage estimated: the caller died before the answer came.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} ${self.cost}"


class ShareLink(models.Model):
    """A read-only snapshot of a conversation, for anyone with the link; revocable.

    The snapshot is taken when the link is made (title, model and the visible thread's
    messages as plain data), so later messages and the owner's identity are never shown.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    token = models.CharField(max_length=64, unique=True)
    snapshot = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Share of conversation {self.conversation_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
