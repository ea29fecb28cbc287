"""python manage.py check_anthropic: the requests Chatsite sends, sent for real, per enabled model.

Run it first after setting ANTHROPIC_API_KEY (see README). Exit code 0 when every check passed,
1 when one failed, 2 when there is nothing to check. The checks are conversations/livecheck.py.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversations import livecheck
from conversations.models import LLMModel


class Command(BaseCommand):
    help = ("Send a few small requests per enabled Claude model with the configured key (a reply, a continue, a title, "
            "a summary, a cached prefix read back, a token count) and print pass/fail with the API's message.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", action="append", default=[], metavar="MODEL_ID",
                            help="Check this model (enabled or not) instead of every enabled one; repeatable.")

    def handle(self, *args, **options) -> None:
        where = livecheck.endpoint_description()
        if not where:
            raise CommandError("ANTHROPIC_API_KEY is not set: there is no API to check. Set it (or put it in .env) and run this again.", returncode=2)
        wanted = options["model"]
        models = list(LLMModel.objects.filter(model_id__in=wanted) if wanted else LLMModel.objects.filter(enabled=True))
        missing = sorted(set(wanted) - {m.model_id for m in models})
        if missing:
            raise CommandError(f"No such model in the catalogue: {', '.join(missing)}", returncode=2)
        if not models:
            raise CommandError("No model is enabled: enable one in admin (Claude models) first.", returncode=2)
        self.stdout.write(f"Checking {len(models)} model{'s' if len(models) != 1 else ''} against {where}. "
                          "These requests are billed to the key's account (a few thousand tokens per model).")
        failed = 0
        for model in models:
            self.stdout.write(f"\n{model.display_name} ({model.model_id})")
            for result in livecheck.check_model(model):
                failed += not result.ok
                mark = self.style.SUCCESS("PASS") if result.ok else self.style.ERROR("FAIL")
                self.stdout.write(f"  {mark}  {result.check:<9} {result.detail}")
        if failed:
            self.stdout.write(self.style.ERROR(f"\n{failed} check{'s' if failed != 1 else ''} failed."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("\nEvery check passed."))
