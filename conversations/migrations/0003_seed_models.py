from django.db import migrations


def seed(apps, schema_editor):
    from conversations import catalog

    catalog.seed(apps.get_model("conversations", "LLMModel"))
    # Titles so far were cut from the first message: placeholders the title task may replace.
    Conversation = apps.get_model("conversations", "Conversation")
    Conversation.objects.exclude(title="").update(title_source="first_message")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_cost_models_usage_summaries")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
