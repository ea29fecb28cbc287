"""Data only: version 1 for every system prompt that has no version yet (its current name and text).

Conversations started before versions existed keep prompt_version empty: which text they were
given is still their own `system_prompt` snapshot.
"""

from django.db import migrations


def backfill(apps, schema_editor):
    SystemPrompt = apps.get_model("conversations", "SystemPrompt")
    SystemPromptVersion = apps.get_model("conversations", "SystemPromptVersion")
    missing = SystemPrompt.objects.filter(versions__isnull=True)
    SystemPromptVersion.objects.bulk_create(
        [SystemPromptVersion(prompt=prompt, number=1, name=prompt.name, text=prompt.text) for prompt in missing]
    )


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0004_workspace"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
