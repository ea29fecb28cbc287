import logging

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db.models import QuerySet
from django.template.loader import render_to_string

from . import sessions

log = logging.getLogger(__name__)


def user_create(*, username: str, email: str, password: str, site_url: str = "") -> User:
    """A new account. Sign-up answers the same whether or not the e-mail address is taken.

    Password reset finds accounts by e-mail, so an address belongs to one account only. A taken
    address is not stored on the new account; its owner gets a note instead (someone, maybe
    they, tried to sign up with it), so nothing on the page tells which addresses have accounts.
    """
    taken = bool(email) and User.objects.filter(email__iexact=email).exists()
    # create_user() hashes the password and normalizes the email's domain.
    user = User.objects.create_user(username=username, email="" if taken else email, password=password)
    if taken:
        _tell_address_owner(email=email, site_url=site_url)
    return user


def _tell_address_owner(*, email: str, site_url: str) -> None:
    context = {"site_url": site_url.rstrip("/")}
    subject = render_to_string("registration/signup_email_taken_subject.txt", context).strip()
    body = render_to_string("registration/signup_email_taken_email.txt", context)
    try:
        send_mail(subject, body, None, [email])
    except Exception:  # the sign-up itself succeeded; a mail server down must not show
        log.exception("Could not send the address-taken note")


def users_set_active(*, users: QuerySet[User], active: bool, actor: User | None = None) -> int:
    """Activate or deactivate accounts; returns how many changed.

    A deactivated person cannot log in; their sessions and API tokens stop working at the next
    request (Django's backend and `tokens.api_token_authenticate` refuse inactive users), and
    their open websockets are closed (accounts.sessions), so an open tab cannot go on chatting. Nothing of theirs
    is deleted: activating them again restores access. Admins cannot deactivate themselves.
    """
    if not active and actor is not None:
        users = users.exclude(pk=actor.pk)
    ids = list(users.filter(is_active=not active).values_list("pk", flat=True))
    User.objects.filter(pk__in=ids).update(is_active=active)
    if not active:
        for user_id in ids:  # a bulk update sends no post_save: tell their sockets here
            sessions.sessions_recheck(user_id=user_id)
    return len(ids)
