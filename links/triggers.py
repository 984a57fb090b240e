"""The database triggers behind cache invalidation, and the one that moves a
link's day of clicks out of its counters row.

Invalidation: any change to a link that
could change a redirect bumps `links_linktableversion` inside the writer's own
transaction, whatever wrote it (the ORM, the admin, raw SQL, a migration,
another process). On PostgreSQL the bump also NOTIFYs every replica's listener
(links/fastpath.py), delivered at commit.

Installed by migration 0002 and again after every `migrate` (links/apps.py):
SQLite drops a table's triggers when a later migration rebuilds the table.
Every statement is idempotent.
"""

# Columns whose change can change a redirect; click counters are left out, so
# counting clicks never invalidates a cache.
REDIRECT_COLUMNS = ("slug", "original_url", "is_active", "expires_at", "max_clicks")
_CHANGED = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in REDIRECT_COLUMNS)
_BUMP = "UPDATE links_linktableversion SET version = version + 1 WHERE id = 1"

SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS links_link_changed AFTER UPDATE ON links_link WHEN {_CHANGED} "
    f"BEGIN {_BUMP}; END",
    f"CREATE TRIGGER IF NOT EXISTS links_link_deleted AFTER DELETE ON links_link BEGIN {_BUMP}; END",
    # INSERT OR REPLACE deletes the row it replaces without firing delete triggers.
    "CREATE TRIGGER IF NOT EXISTS links_link_replaced BEFORE INSERT ON links_link "  # noqa: S608 - constants
    "WHEN EXISTS (SELECT 1 FROM links_link WHERE id = NEW.id OR slug = NEW.slug) "
    f"BEGIN {_BUMP}; END",
    # The row outlives `manage.py flush` and stray deletes: were it recreated,
    # its version would start again at a value some cache was filled under.
    "CREATE TRIGGER IF NOT EXISTS links_linktableversion_kept BEFORE DELETE ON links_linktableversion "
    "BEGIN SELECT RAISE(IGNORE); END",
]

# TRUNCATE skips row triggers: the row is put back if a TRUNCATE removed it.
_UPSERT = (
    "INSERT INTO links_linktableversion (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = links_linktableversion.version + 1"
)
_NOTIFY = "PERFORM pg_notify('links_changed', '')"
POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION links_link_bump_version() RETURNS trigger AS $$ "
    f"BEGIN {_UPSERT}; {_NOTIFY}; RETURN NULL; END $$ LANGUAGE plpgsql",
    "CREATE OR REPLACE TRIGGER links_link_changed AFTER UPDATE ON links_link FOR EACH ROW "
    f"WHEN ({_CHANGED.replace(' IS NOT ', ' IS DISTINCT FROM ')}) EXECUTE FUNCTION links_link_bump_version()",
    "CREATE OR REPLACE TRIGGER links_link_deleted AFTER DELETE ON links_link FOR EACH ROW "
    "EXECUTE FUNCTION links_link_bump_version()",
    "CREATE OR REPLACE TRIGGER links_link_truncated AFTER TRUNCATE ON links_link FOR EACH STATEMENT "
    "EXECUTE FUNCTION links_link_bump_version()",
    "CREATE OR REPLACE FUNCTION links_linktableversion_keep() RETURNS trigger AS $$ "
    "BEGIN RETURN NULL; END $$ LANGUAGE plpgsql",
    "CREATE OR REPLACE TRIGGER links_linktableversion_kept BEFORE DELETE ON links_linktableversion "
    "FOR EACH ROW EXECUTE FUNCTION links_linktableversion_keep()",
]

DROP = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS links_link_changed",
        "DROP TRIGGER IF EXISTS links_link_deleted",
        "DROP TRIGGER IF EXISTS links_link_replaced",
        "DROP TRIGGER IF EXISTS links_linktableversion_kept",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS links_link_changed ON links_link",
        "DROP TRIGGER IF EXISTS links_link_deleted ON links_link",
        "DROP TRIGGER IF EXISTS links_link_truncated ON links_link",
        "DROP TRIGGER IF EXISTS links_linktableversion_kept ON links_linktableversion",
        "DROP FUNCTION IF EXISTS links_link_bump_version()",
        "DROP FUNCTION IF EXISTS links_linktableversion_keep()",
    ],
}


# A counters row (models.LinkClicks) keeps the clicks of its latest day; when a
# write gives it another day (the next day's clicks, or a late write of an
# earlier day's: the flush on PostgreSQL, the journal's roll-up on SQLite), the
# count it held is then added to that day's DailyClicks row, within the same
# statement, whatever wrote it (a writer sets latest_day and latest_day_clicks
# together). Installed by migration 0004 (it names that migration's columns)
# and after every `migrate`.
#
# A later migration that rebuilds links_dailyclicks on SQLite (Django's way of
# altering most columns there) must drop this trigger first
# (uninstall_day_moved): with legacy_alter_table off, as Django sets it, the
# rebuild's final rename fails while a trigger names the table it dropped.
# post_migrate (links/apps.py) puts it back.
_MOVE_DAY = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "VALUES (OLD.link_id, OLD.latest_day, OLD.latest_day_clicks) "
    "ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)
_DAY_CHANGED = (
    "OLD.latest_day IS NOT NULL AND OLD.latest_day_clicks > 0 AND OLD.latest_day IS NOT NEW.latest_day"
)
DAY_MOVED = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS links_linkclicks_day_moved AFTER UPDATE OF latest_day "
        f"ON links_linkclicks WHEN {_DAY_CHANGED} BEGIN {_MOVE_DAY}; END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION links_linkclicks_move_day() RETURNS trigger AS $$ "
        f"BEGIN {_MOVE_DAY}; RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE TRIGGER links_linkclicks_day_moved AFTER UPDATE OF latest_day ON links_linkclicks "
        f"FOR EACH ROW WHEN ({_DAY_CHANGED.replace(' IS NOT NEW', ' IS DISTINCT FROM NEW')}) "
        "EXECUTE FUNCTION links_linkclicks_move_day()",
    ],
}
DROP_DAY_MOVED = {
    "sqlite": ["DROP TRIGGER IF EXISTS links_linkclicks_day_moved"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS links_linkclicks_day_moved ON links_linkclicks",
        "DROP FUNCTION IF EXISTS links_linkclicks_move_day()",
    ],
}


def install_day_moved(connection) -> None:
    _execute(connection, DAY_MOVED[connection.vendor])


def uninstall_day_moved(connection) -> None:
    _execute(connection, DROP_DAY_MOVED[connection.vendor])


def counters_keep_a_day(connection) -> bool:
    """Whether migration 0004's columns are there (not when migrating backwards past it)."""
    if "links_linkclicks" not in connection.introspection.table_names():
        return False
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "links_linkclicks")
    return any(column.name == "latest_day" for column in columns)


def _execute(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection) -> None:
    """Create (or re-create) the triggers and make sure the version row exists."""
    _execute(connection, {"sqlite": SQLITE, "postgresql": POSTGRESQL}[connection.vendor])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO links_linktableversion (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )


def uninstall(connection) -> None:
    _execute(connection, DROP[connection.vendor])
