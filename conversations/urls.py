from django.urls import path

from . import views, views_ops, views_share, views_workspace

urlpatterns = [
    path("", views.chat_home, name="chat"),
    path("new/", views.conversation_new, name="conversation_new"),
    path("<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("<int:conversation_id>/summaries.json", views.conversation_summaries, name="conversation_summaries"),
    path("ops/streams.json", views_ops.streams_stats, name="ops_streams"),
    # Export, import and share links (views_share.py).
    path("<int:conversation_id>/export.md", views_share.conversation_export_markdown, name="conversation_export_markdown"),
    path("<int:conversation_id>/export.json", views_share.conversation_export_json, name="conversation_export_json"),
    path("<int:conversation_id>/messages/<int:message_id>/source/", views_share.message_source, name="message_source"),
    path("<int:conversation_id>/share/", views_share.share_create, name="share_create"),
    path("<int:conversation_id>/share/links/", views_share.share_links, name="share_links"),
    path("<int:conversation_id>/share/<int:link_id>/revoke/", views_share.share_revoke, name="share_revoke"),
    path("import/", views_share.conversation_import, name="conversation_import"),
    path("shared/<str:token>/", views_share.shared_conversation, name="shared_conversation"),
    # The workspace: sidebar pages, pin/archive/rename/delete with undo, archive, search.
    path("sidebar.json", views_workspace.sidebar_json, name="sidebar_json"),
    path("archived/", views_workspace.archived, name="conversations_archived"),
    path("search/", views_workspace.search_page, name="conversation_search"),
    path("search.json", views_workspace.search_json, name="conversation_search_json"),
    path("<int:conversation_id>/rename/", views_workspace.conversation_rename, name="conversation_rename"),
    path("<int:conversation_id>/pin/", views_workspace.conversation_pin, name="conversation_pin"),
    path("<int:conversation_id>/unpin/", views_workspace.conversation_unpin, name="conversation_unpin"),
    path("<int:conversation_id>/archive/", views_workspace.conversation_archive, name="conversation_archive"),
    path("<int:conversation_id>/unarchive/", views_workspace.conversation_unarchive, name="conversation_unarchive"),
    path("<int:conversation_id>/undo-delete/", views_workspace.conversation_undo_delete, name="conversation_undo_delete"),
]
