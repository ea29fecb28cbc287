import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import clear_default_cache

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "tangerine-volcano-42"
THROTTLED = "Too many failed log-in attempts. Try again in a few minutes."


@pytest.fixture(autouse=True)
def _fast_hashing_and_clean_cache(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clear_default_cache()
    yield
    clear_default_cache()


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", "alice@example.org", PASSWORD)


@pytest.fixture
def bob() -> User:
    return User.objects.create_user("bob", "bob@example.org", PASSWORD)


def _login(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def _logged_in_username(client) -> str | None:
    response = client.get(reverse("password_change"))
    if response.status_code != 200:
        return None
    return response.wsgi_request.user.get_username()


# --- sign-up ---------------------------------------------------------------------------------


def test_signup_page_shows_form(client):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    assert b'autocomplete="new-password"' in response.content


def test_signup_creates_user_logs_in_and_redirects_to_chat(client):
    response = client.post(
        reverse("signup"),
        {"username": "carol", "email": "carol@example.org", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response.url == reverse("chat")
    user = User.objects.get(username="carol")
    assert user.email == "carol@example.org"
    assert user.check_password(PASSWORD)
    assert _logged_in_username(client) == "carol"


def test_signup_email_is_optional(client):
    response = client.post(
        reverse("signup"), {"username": "carol", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    assert User.objects.get(username="carol").email == ""


def test_signup_rejects_duplicate_username(client, alice):
    response = client.post(
        reverse("signup"), {"username": "Alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert "username" in response.context["form"].errors
    assert User.objects.count() == 1


def _signup(client, username: str, email: str):
    return client.post(reverse("signup"), {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD})


def test_signup_answers_the_same_for_a_registered_and_a_new_email(alice, mailoutbox):
    """Sign-up must not tell which addresses have accounts (as password reset does not)."""
    from django.test import Client

    known, unknown = Client(), Client()
    taken = _signup(known, "carol", "ALICE@example.org")
    fresh = _signup(unknown, "dave", "dave@example.org")
    assert (taken.status_code, taken.url) == (fresh.status_code, fresh.url) == (302, reverse("chat"))
    assert _logged_in_username(known) == "carol"
    # The address stays alice's alone (password reset finds accounts by it) ...
    assert User.objects.get(username="carol").email == ""
    assert list(User.objects.filter(email__iexact="alice@example.org")) == [alice]
    # ... and its owner hears of the attempt, with the way back into their own account.
    assert [m.to for m in mailoutbox] == [["ALICE@example.org"]]
    assert "/accounts/password_reset/" in mailoutbox[0].body


def test_signup_closed_returns_404_and_login_hides_link(client, settings):
    settings.CHATSITE_SIGNUP_OPEN = False
    assert client.get(reverse("signup")).status_code == 404
    response = client.post(
        reverse("signup"), {"username": "carol", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 404
    assert not User.objects.filter(username="carol").exists()
    assert b"No account?" not in client.get(reverse("login")).content


def test_login_page_shows_signup_and_reset_links(client):
    content = client.get(reverse("login")).content.decode()
    assert "No account?" in content
    assert "Forgot password?" in content
    assert reverse("password_reset") in content


def test_logged_in_user_visiting_signup_is_redirected_to_chat(client, alice):
    client.force_login(alice)
    response = client.get(reverse("signup"))
    assert response.status_code == 302
    assert response.url == reverse("chat")


# --- log-in and log-out ----------------------------------------------------------------------


def test_login_and_logout(client, alice):
    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert response.url == reverse("chat")
    assert _logged_in_username(client) == "alice"

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == reverse("login")
    assert _logged_in_username(client) is None


def test_logout_requires_post(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert _logged_in_username(client) == "alice"


def test_wrong_password_shows_error(client, alice):
    response = _login(client, "alice", "wrong")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert _logged_in_username(client) is None


def _login_from(client, username: str, password: str, *, address: str = "127.0.0.1", forwarded: str | None = None, path: str = ""):
    extra = {"REMOTE_ADDR": address}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(path or reverse("login"), {"username": username, "password": password}, **extra)


def test_throttle_blocks_even_right_password_until_cleared(client, alice, settings):
    for _ in range(settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS):
        response = _login(client, "alice", "wrong")
        assert THROTTLED.encode() not in response.content

    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert THROTTLED.encode() in response.content
    assert _logged_in_username(client) is None

    clear_default_cache()
    assert _login(client, "alice", PASSWORD).status_code == 302
    assert _logged_in_username(client) == "alice"


def test_password_spraying_from_one_address_is_throttled(client, alice, bob, settings):
    """Many usernames, one wrong password each, from one address: the address is stopped."""
    for i in range(settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS):
        _login_from(client, f"someone{i}", "Summer2026!", address="203.0.113.7")
    response = _login_from(client, "bob", PASSWORD, address="203.0.113.7")
    assert response.status_code == 429
    assert THROTTLED.encode() in response.content
    # Another address is not affected.
    assert _login_from(client, "bob", PASSWORD, address="198.51.100.9").status_code == 302


def test_one_address_cannot_lock_someone_else_out(client, alice, settings):
    """The per-account limit is higher than the per-address one: the attacker's own address is
    stopped long before the account is."""
    for _ in range(settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT + 5):
        _login_from(client, "alice", "wrong", address="203.0.113.7")
    assert _login_from(client, "alice", PASSWORD, address="198.51.100.9").status_code == 302


def test_guessing_one_account_from_many_addresses_is_throttled(client, alice, settings):
    for i in range(settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT):
        _login_from(client, "alice", "wrong", address=f"203.0.113.{i + 1}")
    response = _login_from(client, "alice", PASSWORD, address="198.51.100.9")
    assert response.status_code == 429
    assert _logged_in_username(client) is None


def test_behind_a_proxy_each_client_has_its_own_count(client, alice, settings):
    """Behind the documented reverse proxy every request comes from the proxy's address; the
    client is the address the proxy appended to X-Forwarded-For."""
    settings.CHATSITE_TRUSTED_PROXIES = 1
    for _ in range(settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS + 5):
        _login_from(client, "alice", "wrong", address="127.0.0.1", forwarded="203.0.113.7")
    assert _login_from(client, "alice", "wrong", address="127.0.0.1", forwarded="203.0.113.7").status_code == 429
    assert _login_from(client, "alice", PASSWORD, address="127.0.0.1", forwarded="198.51.100.9").status_code == 302


def test_behind_a_proxy_a_forged_forwarded_for_gains_no_guesses(client, alice, settings):
    """A client that sends its own X-Forwarded-For, different every time, in front of the
    address the proxy appends, is still counted at its real address."""
    settings.CHATSITE_TRUSTED_PROXIES = 1
    for i in range(settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS):
        _login_from(client, "alice", "wrong", address="127.0.0.1", forwarded=f"10.9.{i}.1, 203.0.113.7")
    response = _login_from(client, "alice", PASSWORD, address="127.0.0.1", forwarded="10.9.99.1, 203.0.113.7")
    assert response.status_code == 429


def test_without_a_trusted_proxy_forwarded_for_is_ignored(client, alice, settings):
    settings.CHATSITE_TRUSTED_PROXIES = 0
    for i in range(settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS):
        _login_from(client, "alice", "wrong", address="203.0.113.7", forwarded=f"198.51.100.{i + 1}")
    assert _login_from(client, "alice", PASSWORD, address="203.0.113.7", forwarded="198.51.100.200").status_code == 429


def test_admin_login_is_throttled(client, settings):
    User.objects.create_superuser("root", "root@example.org", PASSWORD)
    url = reverse("admin:login")
    for _ in range(25):
        _login_from(client, "root", "wrong", path=url)
    response = _login_from(client, "root", PASSWORD, path=url)
    assert response.status_code == 429
    assert not client.get(reverse("admin:index")).wsgi_request.user.is_authenticated


def test_a_successful_login_does_not_reset_the_address_count(client, alice, bob, settings):
    """Else anyone with an account of their own could reset their address's count between
    guesses at someone else's password."""
    limit = settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS
    for _ in range(limit - 1):
        _login(client, "alice", "wrong")
    assert _login(client, "bob", PASSWORD).status_code == 302
    client.post(reverse("logout"))
    _login(client, "alice", "wrong")
    assert _login(client, "alice", PASSWORD).status_code == 429


# --- password change and reset ---------------------------------------------------------------


def test_anonymous_user_is_redirected_to_login_for_password_change(client):
    url = reverse("password_change")
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={url}"


def test_password_change(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response.url == reverse("password_change_done")
    assert client.get(response.url).status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_password_change_rejects_wrong_old_password(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"),
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "old_password" in response.context["form"].errors
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_password_reset_email_link_sets_new_password(client, alice, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "alice@example.org"})
    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["alice@example.org"]

    link = re.search(r"https?://[^/\s]+(/\S+)", mailoutbox[0].body).group(1)
    response = client.get(link, follow=True)  # Django swaps the token for a session key
    assert response.status_code == 200
    assert response.context["validlink"]
    set_password_url = response.redirect_chain[-1][0]

    response = client.post(
        set_password_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response.url == reverse("password_reset_complete")
    assert _login(client, "alice", NEW_PASSWORD).status_code == 302


def test_password_reset_for_unknown_email_sends_nothing(client, alice, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert mailoutbox == []
