from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from . import usage
from .models import Conversation, LLMModel, Message, Summary, SystemPrompt, UsageRecord
from .templatetags.usage_format import format_usd

_PRICES_NOTE = (
    "USD per million tokens, as Anthropic publishes them. A call's cost is computed and stored when it is made, "
    "so editing a price changes future calls only, never past costs. Edits apply within a few seconds "
    "(each process caches the price table briefly)."
)


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = (
        "display_name", "model_id", "enabled", "is_default", "is_utility",
        "input_price", "output_price", "cache_write_5m_price", "cache_write_1h_price", "cache_read_price",
        "context_window", "min_cache_tokens",
    )
    list_display_links = ("display_name",)
    # Default and utility stay out of the list: each allows one model, so switching them is a
    # change-form edit (the constraint reports a clash there).
    list_editable = ("enabled", "input_price", "output_price", "cache_write_5m_price", "cache_write_1h_price", "cache_read_price")
    list_filter = ("enabled", "is_default", "is_utility")
    search_fields = ("display_name", "model_id")
    readonly_fields = ("updated_at",)
    fieldsets = (
        (None, {"fields": ("display_name", "model_id", "enabled", "is_default", "is_utility", "sort_order")}),
        ("Limits", {"fields": ("context_window", "max_output_tokens")}),
        ("Prices", {"description": _PRICES_NOTE, "fields": ("input_price", "output_price", "long_prompt_threshold", "long_prompt_multiplier")}),
        ("Caching", {
            "description": "Cache prices are USD per million tokens too. Prompts shorter than the minimum are not cached by the model and are billed as plain input.",
            "fields": ("cache_write_5m_price", "cache_write_1h_price", "cache_read_price", "min_cache_tokens"),
        }),
        ("History", {"fields": ("updated_at",)}),
    )


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "is_active", "cache_enabled", "cache_ttl", "updated_at")
    list_filter = ("is_active", "is_default", "cache_enabled", "cache_ttl")
    search_fields = ("name", "text")


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    fields = ("created_at", "role", "status", "content", "model", "input_tokens", "output_tokens",
              "cache_creation_input_tokens", "cache_read_input_tokens", "cost", "error")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class SummaryInline(admin.TabularInline):
    model = Summary
    extra = 0
    can_delete = False
    fields = ("created_at", "upto", "covered_messages", "model", "text")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("upto")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "model", "total_cost", "created_at", "updated_at")
    list_filter = ("model",)
    search_fields = ("title", "owner__username", "messages__content")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "preset", "system_prompt", "current_leaf", "created_at", "updated_at")
    inlines = [SummaryInline, MessageInline]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(total_cost=usage.cost_of_conversation_subquery())

    @admin.display(description="Total cost", ordering="total_cost")
    def total_cost(self, obj: Conversation) -> str:
        return format_usd(obj.total_cost or 0)

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "model", "input_tokens", "output_tokens", "cost", "created_at")
    list_filter = ("status", "role", "model")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger, read-only: spend cannot be edited away. The list shows the totals of
    whatever it is filtered to (see the change_list.html override)."""

    list_display = ("created_at", "user", "kind", "model", "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_usd", "saved_usd", "conversation")
    list_filter = ("kind", "model", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("user__username",)
    list_select_related = ("user", "conversation")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Cache writes")
    def cache_write_tokens(self, obj: UsageRecord) -> int:
        return obj.cache_write_5m_tokens + obj.cache_write_1h_tokens

    @admin.display(description="Cost", ordering="cost")
    def cost_usd(self, obj: UsageRecord) -> str:
        return format_usd(obj.cost)

    @admin.display(description="Saved by cache")
    def saved_usd(self, obj: UsageRecord) -> str:
        return format_usd(obj.uncached_cost - obj.cost)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context=extra_context)
        # The filtered queryset exists only once the changelist is built; the response is a
        # TemplateResponse, so its context can still be extended before it renders.
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["usage_summary"] = usage.usage_report_for_everyone(records=changelist.queryset)
        return response
