from django.db import migrations, models

from links import triggers

# Added in SQL, not by Django's AddField: on SQLite that would rebuild the table
# (a NOT NULL column), and the rebuilt table's key would be "bigint", no longer
# the rowid that keeps the counters in one B-tree (migration 0003). The default
# stays in the database on both (the model's db_default).
ADD_LATEST_DAY_CLICKS = {
    "sqlite": 'ALTER TABLE "links_linkclicks" ADD COLUMN "latest_day_clicks" bigint unsigned NOT NULL '
    'DEFAULT 0 CHECK ("latest_day_clicks" >= 0)',
    "postgresql": 'ALTER TABLE "links_linkclicks" ADD COLUMN "latest_day_clicks" bigint NOT NULL '
    'DEFAULT 0 CHECK ("latest_day_clicks" >= 0)',
}
DROP_LATEST_DAY_CLICKS = 'ALTER TABLE "links_linkclicks" DROP COLUMN "latest_day_clicks"'
# Backwards: the days the counters rows keep go to DailyClicks, where they were kept before.
MOVE_LATEST_DAYS_BACK = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "SELECT link_id, latest_day, latest_day_clicks FROM links_linkclicks "
    "WHERE latest_day IS NOT NULL AND latest_day_clicks > 0 "
    "ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)


def add_latest_day_clicks(apps, schema_editor):
    schema_editor.execute(ADD_LATEST_DAY_CLICKS[schema_editor.connection.vendor])


def drop_latest_day_clicks(apps, schema_editor):
    schema_editor.execute(DROP_LATEST_DAY_CLICKS)


def install_day_moved(apps, schema_editor):
    triggers.install_day_moved(schema_editor.connection)


def move_days_back(apps, schema_editor):
    triggers.uninstall_day_moved(schema_editor.connection)
    schema_editor.execute(MOVE_LATEST_DAYS_BACK)


class Migration(migrations.Migration):

    dependencies = [
        ('links', '0003_link_clicks_apart'),
    ]

    operations = [
        migrations.AddField(
            model_name='linkclicks',
            name='latest_day',
            field=models.DateField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name='linkclicks',
                    name='latest_day_clicks',
                    field=models.PositiveBigIntegerField(default=0, db_default=0),
                ),
            ],
            database_operations=[migrations.RunPython(add_latest_day_clicks, drop_latest_day_clicks)],
        ),
        migrations.RunPython(install_day_moved, move_days_back),
    ]
