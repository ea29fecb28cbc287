from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import admin_exports, catalog, livecheck, prompting, prompts, review, selectors, usage
from .models import Conversation, LLMModel, Message, Summary, SystemPrompt, SystemPromptVersion, UsageRecord
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
    actions = ["test_models"]
    readonly_fields = ("updated_at", "documented")
    fieldsets = (
        (None, {"fields": ("display_name", "model_id", "enabled", "is_default", "is_utility", "sort_order")}),
        ("Limits", {"fields": ("context_window", "max_output_tokens")}),
        ("Behaviour", {
            "description": "How Chatsite builds requests for this model: Continue, titles and summaries, and prompt-size estimates. "
                           "Seeded from Anthropic's documentation; use the “Test” action on the model list to check them against the API.",
            "fields": ("accepts_prefill", "thinks_by_default", "thinking_off", "tokenizer_factor", "documented"),
        }),
        ("Prices", {"description": _PRICES_NOTE, "fields": ("input_price", "output_price", "long_prompt_threshold", "long_prompt_multiplier")}),
        ("Caching", {
            "description": "Cache prices are USD per million tokens too. Prompts shorter than the minimum are not cached by the model and are billed as plain input.",
            "fields": ("cache_write_5m_price", "cache_write_1h_price", "cache_read_price", "min_cache_tokens"),
        }),
        ("History", {"fields": ("updated_at",)}),
    )

    @admin.action(description="Test the selected models with the API key (a few small, billed requests each)", permissions=["change"])
    def test_models(self, request: HttpRequest, queryset) -> None:
        where = livecheck.endpoint_description()
        if not where:
            self.message_user(request, "ANTHROPIC_API_KEY is not set: there is no API to test.", messages.ERROR)
            return
        for model in queryset.order_by("sort_order", "display_name"):
            results = livecheck.check_model(model)
            failed = [r for r in results if not r.ok]
            lines = format_html_join("", "<li>{} {}: {}</li>", (("✓" if r.ok else "✗", r.check, r.detail) for r in results))
            summary = f"{model.display_name}: {'every check passed' if not failed else f'{len(failed)} of {len(results)} checks failed'} ({where})"
            self.message_user(request, format_html("{}<ul>{}</ul>", summary, lines), messages.ERROR if failed else messages.SUCCESS)

    @admin.display(description="Documented")
    def documented(self, obj: LLMModel) -> str:
        caps = catalog.CAPABILITIES.get(obj.model_id)
        if caps is None:
            return "Not in Chatsite's capability table: check Anthropic's model pages, then run the “Test” action."
        return format_html(
            "Read on {} from: {}", caps.read_on,
            format_html_join(", ", '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', ((u.split(" ")[0], u) for u in caps.sources)),
        )


class SystemPromptVersionInline(admin.TabularInline):
    """The prompt's saved versions, newest first; history is never edited."""

    model = SystemPromptVersion
    extra = 0
    can_delete = False
    fields = ("number", "name", "created_by", "created_at", "changes")
    readonly_fields = fields
    ordering = ("-number",)
    verbose_name_plural = "versions (every saved change of the name or text)"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description="Diff")
    def changes(self, obj: SystemPromptVersion) -> str:
        url = reverse("admin:conversations_systemprompt_versions", args=[obj.prompt_id])
        return format_html('<a href="{}#v{}">What changed</a>', url, obj.number)


class SystemPromptForm(forms.ModelForm):
    class Meta:
        model = SystemPrompt
        fields = "__all__"

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("is_default") and not cleaned.get("is_active"):
            raise forms.ValidationError("The default system prompt must be active.")
        return cleaned

    def _get_validation_exclusions(self):
        # Ticking "default" moves the default here (prompts.system_prompt_save) rather than
        # clashing with the current default's row.
        exclude = super()._get_validation_exclusions()
        exclude.add("is_default")
        return exclude


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    """Presets people start conversations with. Every saved change of the name or text is kept
    as a version (prompts.system_prompt_save); conversations record the version they used."""

    form = SystemPromptForm

    list_display = ("name", "is_default", "is_active", "audience", "version", "estimated_tokens", "cache_enabled", "cache_ttl", "updated_at")
    list_filter = ("is_active", "is_default", "cache_enabled", "cache_ttl", "groups")
    search_fields = ("name", "text")
    filter_horizontal = ("groups",)
    readonly_fields = ("preview", "current_version", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "text", "preview")}),
        ("Who may use it", {"fields": ("is_active", "is_default", "groups")}),
        ("Caching", {"fields": ("cache_enabled", "cache_ttl")}),
        ("History", {"fields": ("current_version", "created_at", "updated_at")}),
    )
    inlines = [SystemPromptVersionInline]
    actions = ["make_default", "activate", "deactivate"]
    change_form_template = "admin/conversations/systemprompt/change_form.html"

    def get_queryset(self, request: HttpRequest):
        latest = SystemPromptVersion.objects.filter(prompt=OuterRef("pk")).order_by("-number").values("number")[:1]
        return super().get_queryset(request).annotate(latest_version=Subquery(latest, output_field=IntegerField())).prefetch_related("groups")

    def save_model(self, request: HttpRequest, obj: SystemPrompt, form, change: bool) -> None:
        version = prompts.system_prompt_save(prompt=obj, user=request.user)
        if version is not None and change:
            self.message_user(request, f"Saved as version {version.number}; conversations started from now on use it.", messages.INFO)

    # --- list columns ----------------------------------------------------------------------

    @admin.display(description="Groups")
    def audience(self, obj: SystemPrompt) -> str:
        names = [g.name for g in obj.groups.all()]
        return ", ".join(names) if names else "Everyone"

    @admin.display(description="Version", ordering="latest_version")
    def version(self, obj: SystemPrompt):
        number = getattr(obj, "latest_version", None)
        if not number:
            return "—"
        return format_html('<a href="{}">v{}</a>', reverse("admin:conversations_systemprompt_versions", args=[obj.pk]), number)

    @admin.display(description="≈ Tokens")
    def estimated_tokens(self, obj: SystemPrompt) -> str:
        return f"{prompting.estimate_tokens(obj.text.strip()):,}"

    # --- change page -----------------------------------------------------------------------

    @admin.display(description="Preview")
    def preview(self, obj: SystemPrompt) -> str:
        if obj.pk is None:
            return "Use “Preview” below to see the text as it will be sent before saving."
        p = prompts.system_prompt_preview(text=obj.text, cache_enabled=obj.cache_enabled, cache_ttl=obj.cache_ttl)
        return format_html(
            "≈ {} tokens ({} characters). {} <a href=\"{}\">See it as sent</a>",
            f"{p.estimated_tokens:,}", f"{p.characters:,}", _cache_sentence(p),
            reverse("admin:conversations_systemprompt_preview", args=[obj.pk]),
        )

    @admin.display(description="Current version")
    def current_version(self, obj: SystemPrompt):
        if obj.pk is None:
            return "—"
        latest = prompts.system_prompt_latest_version(prompt=obj)
        if latest is None:
            return "None yet (made when it is next saved or used)"
        who = latest.created_by.get_username() if latest.created_by else "unknown"
        return format_html(
            'v{} by {} on {} — <a href="{}">all versions and what changed</a>',
            latest.number, who, timezone.localtime(latest.created_at).strftime("%Y-%m-%d %H:%M"),
            reverse("admin:conversations_systemprompt_versions", args=[obj.pk]),
        )

    # --- actions ---------------------------------------------------------------------------

    @admin.action(description="Make default (preselected for new conversations)", permissions=["change"])
    def make_default(self, request: HttpRequest, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one system prompt to make it the default.", messages.ERROR)
            return
        prompt = queryset.get()
        try:
            prompts.system_prompt_make_default(prompt=prompt)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        self.log_change(request, prompt, "Made the default system prompt.")
        self.message_user(request, f"“{prompt.name}” is now the default system prompt.")

    @admin.action(description="Activate (offer when starting a conversation)", permissions=["change"])
    def activate(self, request: HttpRequest, queryset) -> None:
        count = queryset.filter(is_active=False).update(is_active=True, updated_at=timezone.now())
        self.message_user(request, f"Activated {count} system prompt(s).")

    @admin.action(description="Deactivate (no longer offered; conversations keep their text)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset) -> None:
        count = queryset.filter(is_active=True).update(is_active=False, updated_at=timezone.now())
        self.message_user(request, f"Deactivated {count} system prompt(s).")

    # --- extra pages -----------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_unsaved_view), name="conversations_systemprompt_preview_unsaved"),
            path("<path:object_id>/preview/", view(self.preview_view), name="conversations_systemprompt_preview"),
            path("<path:object_id>/versions/", view(self.versions_view), name="conversations_systemprompt_versions"),
            path("<path:object_id>/versions/<int:number>/restore/", view(self.restore_view), name="conversations_systemprompt_restore"),
            *super().get_urls(),
        ]

    def _prompt_or_404(self, request: HttpRequest, object_id: str, *, change: bool = False) -> SystemPrompt:
        # Permission first: without it, whether a prompt exists is not told either.
        allowed = self.has_change_permission if change else self.has_view_permission
        if not allowed(request):
            raise PermissionDenied
        prompt = self.get_object(request, object_id)
        if prompt is None:
            raise Http404("No such system prompt")
        if not allowed(request, prompt):
            raise PermissionDenied
        return prompt

    def _page(self, request: HttpRequest, template: str, title: str, prompt: SystemPrompt | None, **context) -> TemplateResponse:
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request),
            "opts": self.opts, "title": title, "original": prompt,
            "has_view_permission": self.has_view_permission(request, prompt),
            "has_change_permission": self.has_change_permission(request, prompt),
            **context,
        })

    def preview_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        prompt = self._prompt_or_404(request, object_id)
        preview = prompts.system_prompt_preview(text=prompt.text, cache_enabled=prompt.cache_enabled, cache_ttl=prompt.cache_ttl)
        return self._page(request, "admin/conversations/systemprompt/preview.html", f"Preview of “{prompt.name}”", prompt,
                          preview=preview, saved=True, cache_sentence=_cache_sentence(preview))

    def preview_unsaved_view(self, request: HttpRequest) -> TemplateResponse:
        """The add/change form posted here by its Preview button: shows the typed text as it
        would be sent, saves nothing."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:conversations_systemprompt_changelist"))
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        preview = prompts.system_prompt_preview(
            text=request.POST.get("text", ""),
            cache_enabled=request.POST.get("cache_enabled") in ("on", "true", "1"),
            cache_ttl="1h" if request.POST.get("cache_ttl") == "1h" else "5m",
        )
        name = request.POST.get("name", "").strip() or "new system prompt"
        return self._page(request, "admin/conversations/systemprompt/preview.html", f"Preview of “{name}” (not saved)", None,
                          preview=preview, saved=False, cache_sentence=_cache_sentence(preview))

    def versions_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        prompt = self._prompt_or_404(request, object_id)
        history = prompts.system_prompt_history(prompt=prompt)
        compare = None
        by_number = {c.version.number: c.version for c in history}
        try:
            a, b = int(request.GET.get("from", "")), int(request.GET.get("to", ""))
        except ValueError:
            # The form starts on "the one before the current" → "the current".
            a, b = (history[1].version.number, history[0].version.number) if len(history) > 1 else (0, 0)
        if "from" in request.GET and a in by_number and b in by_number:
            compare = prompts.version_change(version=by_number[b], previous=by_number[a])
        used = dict(
            Conversation.objects.filter(prompt_version__prompt=prompt).order_by().values("prompt_version__number")
            .annotate(n=Count("pk")).values_list("prompt_version__number", "n")
        )
        return self._page(request, "admin/conversations/systemprompt/versions.html", f"Versions of “{prompt.name}”", prompt,
                          rows=[{"change": c, "uses": used.get(c.version.number, 0)} for c in history],
                          history=history, compare=compare, compare_from=a, compare_to=b,
                          conversations_url=reverse("admin:conversations_conversation_changelist"))

    def restore_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        prompt = self._prompt_or_404(request, object_id, change=True)
        version = get_object_or_404(SystemPromptVersion, prompt=prompt, number=number)
        try:
            created = prompts.system_prompt_restore(prompt=prompt, version=version, user=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            if created is None:
                self.message_user(request, f"Version {number} is already the current text.", messages.INFO)
            else:
                self.log_change(request, prompt, f"Restored version {number} as version {created.number}.")
                self.message_user(request, f"Restored version {number} as version {created.number}.")
        return HttpResponseRedirect(reverse("admin:conversations_systemprompt_versions", args=[prompt.pk]))


def _cache_sentence(p: prompts.PromptPreview) -> str:
    if p.model is None:
        return "No model is enabled."
    if not p.cache_enabled:
        return "Caching is off for this prompt (or on this server): it is sent as plain input."
    if p.long_enough:
        return f"Long enough to be cached for {p.model} (at least {p.model.min_cache_tokens:,} tokens)."
    return f"Too short to be cached for {p.model} (needs {p.model.min_cache_tokens:,} tokens): billed as plain input."


class _ReadOnly:
    """What people wrote and Claude answered is never edited through the admin, not even by a
    superuser: the pages are view-only and a POST to them is refused (403)."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class MessageInline(_ReadOnly, admin.TabularInline):
    """Every message of the conversation in the order written, branches included: `parent`
    links a message to the one it answers or follows; "on thread" marks what the person sees."""

    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    fields = ("message_id", "parent_message", "on_thread", "created_at", "role", "status", "content", "model", "tokens", "cost_usd", "notes")
    readonly_fields = fields
    ordering = ("created_at", "id")
    thread_ids: frozenset[int] = frozenset()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_formset(self, request: HttpRequest, obj=None, **kwargs):
        if obj is not None:
            skeleton = list(Message.objects.filter(conversation=obj).only("id", "parent_id", "created_at"))
            self.thread_ids = frozenset(m.pk for m in selectors.conversation_thread(conversation=obj, messages=skeleton))
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="Message")
    def message_id(self, obj: Message) -> str:
        return f"#{obj.pk}"

    @admin.display(description="Parent")
    def parent_message(self, obj: Message) -> str:
        return f"#{obj.parent_id}" if obj.parent_id else "—"

    @admin.display(description="Tokens")
    def tokens(self, obj: Message) -> str:
        if obj.role != Message.Role.ASSISTANT:
            return "—"
        parts = [f"{obj.input_tokens:,} in", f"{obj.output_tokens:,} out"]
        if obj.cache_creation_input_tokens:
            parts.append(f"{obj.cache_creation_input_tokens:,} cache write")
        if obj.cache_read_input_tokens:
            parts.append(f"{obj.cache_read_input_tokens:,} cache read")
        return ", ".join(parts)

    @admin.display(description="Cost")
    def cost_usd(self, obj: Message) -> str:
        return format_usd(obj.cost) if obj.role == Message.Role.ASSISTANT else "—"

    @admin.display(description="Error / stop / note")
    def notes(self, obj: Message) -> str:
        parts = [f"{obj.error_code}: {obj.error}" if obj.error_code else obj.error, f"stop: {obj.stop_reason}" if obj.stop_reason else "", obj.context_note]
        return " · ".join(p for p in parts if p) or "—"

    @admin.display(description="On thread", boolean=True)
    def on_thread(self, obj: Message) -> bool:
        return obj.pk in self.thread_ids


class SummaryInline(_ReadOnly, admin.TabularInline):
    model = Summary
    extra = 0
    can_delete = False
    fields = ("created_at", "upto", "covered_messages", "model", "text")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("upto")


class ConversationStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin):
        return [(key, label) for key, label, _ in review.STATES]

    def queryset(self, request: HttpRequest, queryset):
        return review.filter_state(queryset, self.value()) if self.value() else queryset


class CostRangeFilter(admin.SimpleListFilter):
    """Ranges of everything billed for the conversation (the ledger: replies, summaries, titles)."""

    title = "cost"
    parameter_name = "cost"

    def lookups(self, request: HttpRequest, model_admin):
        return [(key, label) for key, label, _low, _high in review.COST_RANGES]

    def queryset(self, request: HttpRequest, queryset):
        return review.filter_cost(queryset, self.value()) if self.value() else queryset


@admin.register(Conversation)
class ConversationAdmin(_ReadOnly, admin.ModelAdmin):
    """Review: find conversations by person, date, model, prompt (and version), state and cost;
    read them in order with their usage and errors; export them. Nothing here edits content."""

    list_display = ("__str__", "owner", "model", "prompt", "state", "message_count", "total_cost", "created_at", "updated_at")
    list_filter = (
        ConversationStateFilter, CostRangeFilter, "model",
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("preset", admin.RelatedOnlyFieldListFilter),
        ("prompt_version", admin.RelatedOnlyFieldListFilter),
        "created_at", "updated_at",
    )
    search_fields = ("title", "owner__username", "owner__email", "messages__content")
    list_select_related = ("owner", "preset", "prompt_version")
    fieldsets = (
        (None, {"fields": ("title", "owner", "model", "preset", "prompt_version_link", "system_prompt")}),
        ("State", {"fields": ("created_at", "updated_at", "pinned_at", "archived_at", "deleted_at", "current_leaf", "context_tokens")}),
        ("Usage", {"fields": ("usage_totals",)}),
    )
    readonly_fields = ("title", "owner", "model", "preset", "prompt_version_link", "system_prompt", "created_at", "updated_at",
                       "pinned_at", "archived_at", "deleted_at", "current_leaf", "context_tokens", "usage_totals")
    inlines = [SummaryInline, MessageInline]
    date_hierarchy = "created_at"
    actions = ["export_json", "export_csv"]
    change_list_template = "admin/conversations/conversation/change_list.html"

    def get_queryset(self, request: HttpRequest):
        # total_cost: everything billed for the conversation (replies, summaries, titles).
        return review.conversations_for_review(super().get_queryset(request))

    @admin.display(description="Total cost", ordering="total_cost")
    def total_cost(self, obj: Conversation) -> str:
        return format_usd(obj.total_cost or 0)

    @admin.display(description="Messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description="Prompt", ordering="preset__name")
    def prompt(self, obj: Conversation) -> str:
        if obj.preset_id is None:
            return "Custom" if obj.system_prompt else "—"
        return f"{obj.preset.name} v{obj.prompt_version.number}" if obj.prompt_version_id else obj.preset.name

    @admin.display(description="State")
    def state(self, obj: Conversation) -> str:
        flags = [
            label for label, on in (
                ("deleted", obj.deleted_at is not None), ("archived", obj.archived_at is not None and obj.deleted_at is None),
                ("writing", getattr(obj, "has_streaming", False)), ("interrupted", getattr(obj, "has_interrupted", False)),
                ("error", getattr(obj, "has_error", False)),
            ) if on
        ]
        return ", ".join(flags) or "ok"

    @admin.display(description="Prompt version")
    def prompt_version_link(self, obj: Conversation):
        version = obj.prompt_version
        if version is None:
            return "— (started before versions were kept, or without a preset)"
        url = reverse("admin:conversations_systemprompt_versions", args=[version.prompt_id])
        return format_html('<a href="{}#v{}">{} v{}</a>', url, version.number, version.name, version.number)

    @admin.display(description="Billed")
    def usage_totals(self, obj: Conversation):
        totals = selectors.conversation_usage_totals(conversation=obj)
        return format_html(
            "{} in all: replies {}, summaries {}, titles {}. Prompt tokens {}, {} read from the cache.",
            format_usd(totals.cost), format_usd(totals.reply_cost), format_usd(totals.summary_cost), format_usd(totals.title_cost),
            f"{totals.prompt_tokens:,}", f"{totals.cache_read_tokens:,}",
        )

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False

    @admin.action(description="Export selected conversations (JSON)", permissions=["view"])
    def export_json(self, request: HttpRequest, queryset) -> HttpResponse:
        data = admin_exports.conversations_export_json(queryset)
        response = HttpResponse(json.dumps(data, ensure_ascii=False, indent=1), content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="conversations-{timezone.now():%Y%m%d-%H%M%S}.json"'
        return response

    @admin.action(description="Export selected conversations (CSV, one row per message)", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        response = HttpResponse(admin_exports.conversations_export_csv(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="conversations-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context=extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            people, count = review.totals_per_person(changelist.queryset)
            response.context_data["people_totals"] = people
            response.context_data["people_count"] = count
        return response


@admin.register(Message)
class MessageAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "model", "input_tokens", "output_tokens", "cost", "created_at")
    list_filter = ("status", "role", "model")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # One message out of a thread would orphan its replies: delete whole conversations.
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger, read-only: spend cannot be edited away. The list shows the totals of
    whatever it is filtered to (see the change_list.html override)."""

    list_display = ("created_at", "user", "kind", "model", "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_usd", "saved_usd", "estimated", "conversation")
    list_filter = ("kind", "model", "estimated", "created_at")
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
