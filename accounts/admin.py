from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import F
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from conversations import budgets, review, usage
from conversations.templatetags.usage_format import format_usd

from . import services
from .models import ApiToken, SpendLimit

_LIMIT_NOTE = "USD per calendar month (UTC). The row without a person is the default for everyone who has no row of their own; a blank limit means no limit."


class SpendLimitForm(forms.ModelForm):
    class Meta:
        model = SpendLimit
        fields = ("user", "monthly_limit")

    def clean(self) -> dict:
        cleaned = super().clean()
        # A clear form error before the database's unique index would refuse it.
        if cleaned.get("user") is None and SpendLimit.objects.filter(user__isnull=True).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("There is already a default row (without a person); edit that one instead.")
        return cleaned


@admin.register(SpendLimit)
class SpendLimitAdmin(admin.ModelAdmin):
    form = SpendLimitForm
    list_display = ("who", "limit", "spent", "updated_at")
    list_display_links = ("who",)
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    fields = ("user", "monthly_limit")
    # The default row first, then people by name.
    ordering = (F("user__username").asc(nulls_first=True),)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("user").annotate(spent_this_month=usage.spent_this_month_subquery(user_ref="user"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.base_fields["user"].help_text = "Leave blank for the default row (everyone without a limit of their own)."
        form.base_fields["monthly_limit"].help_text = _LIMIT_NOTE
        return form

    @admin.display(description="Who", ordering="user__username")
    def who(self, obj: SpendLimit) -> str:
        return obj.user.get_username() if obj.user_id else "Default (everyone)"

    @admin.display(description="Monthly limit", ordering="monthly_limit")
    def limit(self, obj: SpendLimit) -> str:
        return "No limit" if obj.monthly_limit is None else format_usd(obj.monthly_limit)

    @admin.display(description="Spent this month", ordering="spent_this_month")
    def spent(self, obj: SpendLimit) -> str:
        # The default row is shared by many people: its spend is theirs, on the usage records.
        return "—" if obj.user_id is None else format_usd(obj.spent_this_month or 0)


class SpendLimitInline(admin.StackedInline):
    model = SpendLimit
    fk_name = "user"
    can_delete = True
    max_num = 1
    # One empty form when the person has no row yet (max_num caps it otherwise). A blank form
    # left untouched saves nothing; to exempt someone from a default limit, add their row with
    # a blank limit in Spend limits.
    extra = 1
    fields = ("monthly_limit", "spent")
    readonly_fields = ("spent",)
    verbose_name = "monthly spend limit"
    verbose_name_plural = "monthly spend limit (without one, the default row applies)"

    @admin.display(description="Spent this month")
    def spent(self, obj: SpendLimit) -> str:
        return format_usd(budgets.spent_this_month(obj.user_id)) if obj.user_id else "—"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ChatsiteUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, SpendLimitInline]
    # Per-person totals are annotated subqueries: the list costs the same queries for any page.
    list_display = ("username", "email", "is_active", "is_staff", "conversations", "message_total", "total_cost", "last_login", "date_joined")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    actions = ["deactivate", "activate"]

    def get_queryset(self, request: HttpRequest):
        return review.users_with_totals(super().get_queryset(request))

    @admin.display(description="Conversations", ordering="conversation_count")
    def conversations(self, obj) -> str:
        url = reverse("admin:conversations_conversation_changelist")
        return format_html('<a href="{}?owner__id__exact={}">{}</a>', url, obj.pk, obj.conversation_count)

    @admin.display(description="Messages", ordering="message_count")
    def message_total(self, obj) -> int:
        return obj.message_count

    @admin.display(description="Total cost", ordering="total_cost")
    def total_cost(self, obj) -> str:
        return format_usd(obj.total_cost)

    @admin.action(description="Deactivate selected people (no login, API tokens and open chats stop)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset) -> None:
        count = services.users_set_active(users=queryset, active=False, actor=request.user)
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(request, "You cannot deactivate your own account; it was left active.", messages.WARNING)
        self.message_user(request, f"Deactivated {count} account(s).")

    @admin.action(description="Activate selected people", permissions=["change"])
    def activate(self, request: HttpRequest, queryset) -> None:
        count = services.users_set_active(users=queryset, active=True)
        self.message_user(request, f"Activated {count} account(s).")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Admins see who holds API tokens and can revoke them; secrets are never stored or shown."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    list_select_related = ("user",)
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    exclude = ("token_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset) -> None:
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")
