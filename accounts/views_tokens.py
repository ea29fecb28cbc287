"""The account page's API tokens: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import tokens


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “laptop terminal” or “nightly report script”.")


@never_cache  # the response that shows a new secret must not be kept by any cache
@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    new_secret = ""
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            try:
                token, new_secret = tokens.api_token_create(user=request.user, name=form.cleaned_data["name"])
            except ValidationError as exc:
                form.add_error("name", exc)
            else:
                # Rendered, not redirected: the secret is never stored, so this is its only showing.
                form = ApiTokenForm()
                flash.success(request, f"Token “{token.name}” created. Copy it now: it will not be shown again.")
    else:
        form = ApiTokenForm()
    context = {"form": form, "tokens": tokens.api_tokens_for_user(user=request.user), "new_secret": new_secret}
    return render(request, "accounts/api_tokens.html", context)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not tokens.api_token_revoke(user=request.user, token_id=token_id):
        raise Http404("No such active token.")
    flash.success(request, "Token revoked. Programs using it can no longer reach your account.")
    return redirect("api_tokens")
