"""Indexes for the sidebar and for search.

- The sidebar's main list (not deleted, not archived), newest activity first: a partial index
  that a keyset page on (updated_at, id) reads as one short range, however many conversations
  the person has.
- Full-text search on PostgreSQL: GIN expression indexes on the same `to_tsvector` expressions
  that conversations/search.py queries with (config "english"). Created on PostgreSQL only;
  SQLite searches by substring and has nothing to index.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations, models

SEARCH_CONFIG = "english"  # conversations.search.SEARCH_CONFIG at the time of this migration


def _search_indexes(apps):
    Message = apps.get_model("conversations", "Message")
    Conversation = apps.get_model("conversations", "Conversation")
    return [
        (Message, GinIndex(SearchVector("content", config=SEARCH_CONFIG), name="message_content_search")),
        (Conversation, GinIndex(SearchVector("title", config=SEARCH_CONFIG), name="conversation_title_search")),
    ]


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, index in _search_indexes(apps):
        schema_editor.add_index(model, index)


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, index in _search_indexes(apps):
        schema_editor.remove_index(model, index)


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0005_system_prompt_versions_backfill"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(
                fields=["owner", "-updated_at", "-id"],
                condition=models.Q(("archived_at__isnull", True), ("deleted_at__isnull", True)),
                name="conversation_main_list",
            ),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
