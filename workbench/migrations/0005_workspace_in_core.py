"""Workspace, Membership and Event now belong to core (core/migrations/0001): the tabs and
messages point at core.Workspace, and this app forgets the three models. The database is
untouched here; core/migrations/0002 renames the tables."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workbench", "0004_sweeps"),
        ("core", "0001_initial"),
        ("tasks_app", "0003_workspace_in_core"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="workbenchtab",
                    name="workspace",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tabs",
                        to="core.workspace",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="workspace",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="core.workspace",
                    ),
                ),
                migrations.DeleteModel(name="Event"),
                migrations.DeleteModel(name="Membership"),
                migrations.DeleteModel(name="Workspace"),
            ]
        ),
    ]
