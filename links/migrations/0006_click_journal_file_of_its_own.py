"""The click journal moves out of the database into a file of its own
(links.clicks): ClickJournal's table goes, ClickRollUp (how far the journal
has been added to the counters) comes."""

from django.db import migrations, models

# Clicks a worker journaled here and did not roll up (one killed before its
# roll-up), added to the counters before the table goes: the roll-up of
# migration 0005's links.clicks, as it was (each day oldest first, links
# deleted since skipped).
OLD_JOURNAL_DAYS = "SELECT DISTINCT day FROM links_clickjournal ORDER BY day"
OLD_ROLL_UP_DAY = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at, latest_day, latest_day_clicks) "
    "SELECT link_id, sum(clicks), max(last_clicked_at), day, sum(day_clicks) "
    "FROM links_clickjournal AS journal WHERE day = %s GROUP BY link_id, day "
    "HAVING EXISTS (SELECT 1 FROM links_linkclicks WHERE link_id = journal.link_id) "
    "OR EXISTS (SELECT 1 FROM links_link WHERE id = journal.link_id) "
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + excluded.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < excluded.last_clicked_at "
    "THEN excluded.last_clicked_at ELSE links_linkclicks.last_clicked_at END, "
    "latest_day_clicks = CASE WHEN links_linkclicks.latest_day = excluded.latest_day "
    "THEN links_linkclicks.latest_day_clicks + excluded.latest_day_clicks "
    "ELSE excluded.latest_day_clicks END, "
    "latest_day = excluded.latest_day"
)
# A journal file beside a database made anew (a test database, made again at
# the same path) belongs to the database that was there before.
EMPTY_THE_JOURNAL_FILE = "DELETE FROM clicks.links_clickjournal"


def roll_up_the_journal_table(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(OLD_JOURNAL_DAYS)
        for (day,) in cursor.fetchall():
            cursor.execute(OLD_ROLL_UP_DAY, [day])


def empty_the_journal_file(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pragma_database_list WHERE name = 'clicks'")
        if cursor.fetchone():
            cursor.execute(EMPTY_THE_JOURNAL_FILE)


class Migration(migrations.Migration):
    dependencies = [
        ("links", "0005_click_journal"),
    ]

    operations = [
        migrations.RunPython(roll_up_the_journal_table, migrations.RunPython.noop),
        migrations.DeleteModel(name="ClickJournal"),
        migrations.CreateModel(
            name="ClickRollUp",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("last_row", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(empty_the_journal_file, migrations.RunPython.noop),
    ]
