from decimal import Decimal
from django.db import migrations, models


def copy_capabilities(apps, schema_editor):
    """The catalogue's documented behaviour onto the rows already seeded (issue 21)."""
    from conversations import catalog

    LLMModel = apps.get_model("conversations", "LLMModel")
    for model_id in catalog.CAPABILITIES:
        LLMModel.objects.filter(model_id=model_id).update(**catalog.capability_fields(model_id))


class Migration(migrations.Migration):

    dependencies = [
        ('conversations', '0006_search_and_sidebar_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='llmmodel',
            name='accepts_prefill',
            field=models.BooleanField(default=False, help_text="Accepts a request that ends with Claude's own turn (prefill). Off: Continue sends the kept text followed by a short request to carry on."),
        ),
        migrations.AddField(
            model_name='llmmodel',
            name='thinking_off',
            field=models.CharField(blank=True, choices=[('', 'Cannot be turned off'), ('disabled', 'disabled'), ('between_tools', 'between_tools')], default='', help_text='The thinking type that turns thinking off for titles and summaries (at effort high or lower).', max_length=16),
        ),
        migrations.AddField(
            model_name='llmmodel',
            name='thinks_by_default',
            field=models.BooleanField(default=True, help_text='Thinks before answering unless told not to; thinking tokens count toward max_tokens. Titles and summaries then turn thinking off or leave room for it.'),
        ),
        migrations.AddField(
            model_name='llmmodel',
            name='tokenizer_factor',
            field=models.DecimalField(decimal_places=2, default=Decimal('1.30'), help_text='Tokens this model counts for text the older Claude tokenizer counts as one (1.30 for Claude 4.7 and later). Used to estimate prompt sizes.', max_digits=4),
        ),
        migrations.RunPython(copy_capabilities, migrations.RunPython.noop),
    ]
