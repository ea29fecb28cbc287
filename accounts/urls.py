"""Django's auth views (same paths and names as django.contrib.auth.urls) plus sign-up.

Listed one by one rather than include("django.contrib.auth.urls") because some of them take
our own forms (the reset forms with autofocus) or context. Log-in throttling is not here: it
is django-axes, in the authentication backends (accounts/login_throttle.py), so it covers
/admin/login/ too.
"""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views, views_tokens
from accounts.forms import PasswordResetRequestForm, PasswordResetSetForm

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True,
            # A callable: the template calls it on each render, so the setting is read per request.
            extra_context={"signup_open": views.signup_is_open},
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("api-tokens/", views_tokens.api_tokens, name="api_tokens"),
    path("api-tokens/<int:token_id>/revoke/", views_tokens.api_token_revoke, name="api_token_revoke"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path(
        "password_reset/",
        auth_views.PasswordResetView.as_view(form_class=PasswordResetRequestForm),
        name="password_reset",
    ),
    path(
        "password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(form_class=PasswordResetSetForm),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
