from django.conf import settings
from django.http import HttpRequest


def chatsite(request: HttpRequest) -> dict:
    return {"chatsite_offline_demo": settings.CHATSITE_OFFLINE_DEMO, "chatsite_signup_open": settings.CHATSITE_SIGNUP_OPEN}
