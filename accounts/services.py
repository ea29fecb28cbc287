from django.contrib.auth.models import User


def user_create(*, username: str, email: str, password: str) -> User:
    # create_user() hashes the password and normalizes the email's domain.
    return User.objects.create_user(username=username, email=email, password=password)
