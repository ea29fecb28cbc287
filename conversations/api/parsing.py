"""The API's JSON bodies: parsed as ninja does, and refused when they hold a lone surrogate.

A `\\ud800` escape is valid JSON syntax but not text (conversations.cleantext): it cannot be
stored, and a clear 400 says more than storing something else would.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from ..cleantext import has_lone_surrogate


class NotText(ValueError):
    pass


class TextJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        data = json.loads(request.body)
        if has_lone_surrogate(data):
            raise NotText("a lone surrogate")
        return data
