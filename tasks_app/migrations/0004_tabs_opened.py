"""A task keeps how many tabs were ever opened on it, counted once here from its tabs."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def _count(apps, schema_editor):
    tasks = apps.get_model("tasks_app", "Task")
    tabs = apps.get_model("workbench", "WorkbenchTab")
    opened = (
        tabs.objects.filter(task_id=OuterRef("pk"))
        .order_by()
        .values("task_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    tasks.objects.update(tabs_opened=Coalesce(Subquery(opened), 0))


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0003_workspace_in_core"),
        ("workbench", "0007_drafts_out_of_the_event_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="tabs_opened",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(_count, migrations.RunPython.noop),
    ]
