from django.contrib import admin

from .models import Conversation, Message, SystemPrompt


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "is_active", "updated_at")
    list_filter = ("is_active", "is_default")
    search_fields = ("name", "text")


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    fields = ("created_at", "role", "status", "content", "model", "input_tokens", "output_tokens",
              "cache_creation_input_tokens", "cache_read_input_tokens", "error")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "model", "created_at", "updated_at")
    list_filter = ("model",)
    search_fields = ("title", "owner__username", "messages__content")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "preset", "system_prompt", "current_leaf", "created_at", "updated_at")
    inlines = [MessageInline]
    date_hierarchy = "created_at"

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "model", "input_tokens", "output_tokens", "created_at")
    list_filter = ("status", "role", "model")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
