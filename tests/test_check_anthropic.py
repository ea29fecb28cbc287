"""The live check for operators (issue 21): `manage.py check_anthropic` and the admin "Test"
action send, per model, the requests Chatsite sends and report each with the API's own message.
In CI they run against the strict fake, which refuses what the API refuses for each model."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conversations import modelcache, prompting
from conversations.models import LLMModel

pytestmark = [pytest.mark.django_db]

ENABLED = ["claude-haiku-5-5", "claude-opus-5-5", "claude-sonnet-5-5"]  # seeded as enabled


def run_check(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("check_anthropic", *args, stdout=out, no_color=True)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code)
    return out.getvalue(), code


def new_requests(fake, before: int) -> list[dict]:
    return [r["body"] for r in fake.requests()[before:]]


def test_every_enabled_model_passes_every_check_against_the_fake(llm):
    before = len(llm.requests())
    counted = llm.stats()["count_tokens"]
    output, code = run_check()

    assert code == 0 and "Every check passed." in output
    assert output.count("PASS") == 6 * len(ENABLED) and "FAIL" not in output
    for check in ("reply", "continue", "title", "summary", "cache", "tokens"):
        assert output.count(f"PASS  {check}") == len(ENABLED)
    assert llm.stats()["count_tokens"] - counted == len(ENABLED)
    sent = new_requests(llm, before)
    assert sorted({body["model"] for body in sent}) == ENABLED
    for model in ENABLED:
        mine = [b for b in sent if b["model"] == model]
        assert len(mine) == 6  # reply, continue, title, summary, and the cached prefix twice
        continued = [b for b in mine if b.get("stream") and len(b["messages"]) == 3]
        assert [m["role"] for m in continued[0]["messages"]] == ["user", "assistant", "user"]
        assert continued[0]["messages"][-1]["content"] == prompting.CONTINUE_INSTRUCTION


def test_a_wrong_behaviour_setting_fails_with_the_apis_message(llm):
    # An admin ticked "accepts prefill" and set a thinking type Sonnet 5.5 refuses.
    LLMModel.objects.filter(model_id="claude-sonnet-5-5").update(accepts_prefill=True, thinking_off="disabled", tokenizer_factor="1.00")
    output, code = run_check("--model", "claude-sonnet-5-5")

    assert code == 1 and "5 checks failed." in output
    lines = {line.split()[1]: line for line in output.splitlines() if line.strip().startswith(("PASS", "FAIL"))}
    assert lines["reply"].lstrip().startswith("PASS")
    assert lines["continue"].lstrip().startswith("FAIL") and (
        "400 invalid_request_error: This model does not support assistant message prefill. "
        "The conversation must end with a user message.") in lines["continue"]
    for utility_call in ("title", "summary", "cache"):  # the utility calls use the thinking setting
        assert lines[utility_call].lstrip().startswith("FAIL")
        assert '400 invalid_request_error: "thinking.type.disabled" is not supported for this model.' in lines[utility_call]
    assert lines["tokens"].lstrip().startswith("FAIL") and "set the model's tokenizer factor to about 1.30 (now 1.00)" in lines["tokens"]


def test_a_disabled_model_can_be_checked_before_it_is_offered(llm):
    before = len(llm.requests())
    output, code = run_check("--model", "claude-fable-5-1")
    assert code == 0 and output.count("PASS") == 6
    assert {b["model"] for b in new_requests(llm, before)} == {"claude-fable-5-1"}


def test_without_a_key_there_is_nothing_to_check(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.ANTHROPIC_BASE_URL = None
    with pytest.raises(CommandError) as refused:
        call_command("check_anthropic", stdout=io.StringIO())
    assert refused.value.returncode == 2 and "ANTHROPIC_API_KEY is not set" in str(refused.value)


def test_an_unknown_model_id_is_refused(llm):
    with pytest.raises(CommandError) as refused:
        call_command("check_anthropic", "--model", "claude-nonexistent", stdout=io.StringIO())
    assert "No such model in the catalogue: claude-nonexistent" in str(refused.value)


def test_the_test_action_on_the_models_page(llm, admin_client):
    haiku, sonnet = LLMModel.objects.get(model_id="claude-haiku-5-5"), LLMModel.objects.get(model_id="claude-sonnet-5-5")
    LLMModel.objects.filter(pk=sonnet.pk).update(accepts_prefill=True)
    modelcache.clear()
    before = len(llm.requests())
    response = admin_client.post(
        reverse("admin:conversations_llmmodel_changelist"),
        {"action": "test_models", "_selected_action": [haiku.pk, sonnet.pk]}, follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    [haiku_message] = [m for m in shown if m.startswith("Claude Haiku 5.5")]
    [sonnet_message] = [m for m in shown if m.startswith("Claude Sonnet 5.5")]
    assert "every check passed" in haiku_message and "✗" not in haiku_message
    assert "1 of 6 checks failed" in sonnet_message
    assert "✗ continue: 400 invalid_request_error: This model does not support assistant message prefill." in sonnet_message
    assert {b["model"] for b in new_requests(llm, before)} == {"claude-haiku-5-5", "claude-sonnet-5-5"}
    html = response.content.decode()
    assert "✓ title" in html and "<script" not in json.dumps(shown)


def test_the_models_page_shows_where_each_rows_behaviour_was_read(admin_client):
    sonnet = LLMModel.objects.get(model_id="claude-sonnet-5-5")
    page = admin_client.get(reverse("admin:conversations_llmmodel_change", args=[sonnet.pk])).content.decode()
    assert "Read on 2026-12-08 from" in page and "https://platform.claude.com/docs/en/models/sonnet-5-5/whats-new-sonnet-5-5" in page
    for field in ("accepts_prefill", "thinks_by_default", "thinking_off", "tokenizer_factor"):
        assert f'name="{field}"' in page
