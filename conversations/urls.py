from django.urls import path

from . import views, views_ops

urlpatterns = [
    path("", views.chat_home, name="chat"),
    path("new/", views.conversation_new, name="conversation_new"),
    path("<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("<int:conversation_id>/summaries.json", views.conversation_summaries, name="conversation_summaries"),
    path("ops/streams.json", views_ops.streams_stats, name="ops_streams"),
]
