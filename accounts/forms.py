from typing import Any

from django import forms
from django.contrib.auth.forms import (
    AuthenticationForm,
    PasswordResetForm,
    SetPasswordForm,
    UserCreationForm,
)
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from accounts.throttle import (
    client_ip,
    login_failure_record,
    login_failures_clear,
    login_is_throttled,
)


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}
        help_texts = {"email": "Optional. Needed only to reset a forgotten password."}

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email") or ""
        # Password reset looks users up by email, so two accounts must not share one.
        if email and User.objects.filter(email__iexact=email).exists():
            raise ValidationError("An account with this email already exists.", code="unique")
        return email


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed log-in attempts. Try again in a few minutes.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        # Checked before authenticate(): a throttled attempt never tests the password.
        if login_is_throttled(username=username, ip=ip):
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned_data = super().clean()
        except ValidationError:
            login_failure_record(username=username, ip=ip)
            raise
        # Only a real success resets the count (an empty password also gets here, without a user).
        if self.user_cache is not None:
            login_failures_clear(username=username, ip=ip)
        return cleaned_data


class PasswordResetRequestForm(PasswordResetForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs["autofocus"] = True


class PasswordResetSetForm(SetPasswordForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].widget.attrs["autofocus"] = True
