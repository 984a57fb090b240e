from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class LinksConfig(AppConfig):
    name = "links"
    verbose_name = "Short links"

    def ready(self) -> None:
        from links.clicks import attach_journal

        post_migrate.connect(reinstall_link_triggers, sender=self)
        connection_created.connect(attach_journal)


def reinstall_link_triggers(sender, using, **kwargs) -> None:
    """After every `migrate`: SQLite loses a table's triggers when a migration
    rebuilds it, and whatever the migrations changed must reach every redirect
    cache. Re-creating them (idempotent) and bumping the version covers both.
    (The counters' day trigger only once its columns exist: links/triggers.py.)"""
    from django.db import connections

    from links import triggers
    from links.services import mark_links_changed

    connection = connections[using]
    if "links_linktableversion" not in connection.introspection.table_names():
        return  # migrating backwards, before 0002
    triggers.install(connection)
    if triggers.counters_keep_a_day(connection):
        triggers.install_day_moved(connection)
    mark_links_changed(using=using)
