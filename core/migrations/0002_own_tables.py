"""The moved tables take this app's names, and their content types follow them, so an
operator's permissions on workspaces, memberships and events (and the admin's history of
them) survive the move."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MOVED = ("workspace", "membership", "event")


def _relabel(apps: Apps, schema_editor: BaseDatabaseSchemaEditor, old: str, new: str) -> None:
    content_types = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        # A content type made for the new label already (none on a normal upgrade) would
        # collide with the relabelled one; the old one carries the permissions.
        if content_types.objects.using(db).filter(app_label=old, model=model).exists():
            content_types.objects.using(db).filter(app_label=new, model=model).delete()
            content_types.objects.using(db).filter(app_label=old, model=model).update(app_label=new)


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _relabel(apps, schema_editor, "workbench", "core")


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _relabel(apps, schema_editor, "core", "workbench")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        # Every reference to the models has moved before the tables are renamed.
        ("tasks_app", "0003_workspace_in_core"),
        ("workbench", "0005_workspace_in_core"),
    ]

    operations = [
        migrations.AlterModelTable(name="workspace", table=None),
        migrations.AlterModelTable(name="membership", table=None),
        migrations.AlterModelTable(name="event", table=None),
        migrations.RunPython(forwards, backwards),
    ]
