import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class SystemPrompt(models.Model):
    """An admin-managed preset a person can start a conversation with."""

    name = models.CharField(max_length=100, unique=True)
    text = models.TextField(blank=True)
    is_default = models.BooleanField(default=False, help_text="Preselected for new conversations.")
    is_active = models.BooleanField(default=True, help_text="Offered when starting a conversation.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_system_prompt"),
        ]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    # The preset it was started from, and a snapshot of its text: editing a preset later
    # must not rewrite the instructions of conversations already under way.
    preset = models.ForeignKey(SystemPrompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True)
    # The message the person currently sees at the end of the thread; the thread is the
    # parent chain from here, so regenerate/edit branches need no schema change.
    current_leaf = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

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
