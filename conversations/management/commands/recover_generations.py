from django.core.management.base import BaseCommand

from conversations.tasks import reap_stale_generations
from conversations import recovery


class Command(BaseCommand):
    help = "Mark replies left 'streaming' by a dead process as interrupted (keeps their text)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Treat every streaming reply as orphaned. Only when no other server process is running (single-process start-up).",
        )

    def handle(self, *args, **options) -> None:
        if options["all"]:
            count = len(recovery.reap_stale(stale_after=0))
        else:
            count = reap_stale_generations()
        self.stdout.write(f"Recovered {count} interrupted repl{'y' if count == 1 else 'ies'}.")
