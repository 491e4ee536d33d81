"""Unread and draft become per user (TabUserState); a tab gets a model.

What a tab held is kept as its creator's own state: the draft was theirs, and an unread
reply was unread for them (other members start with it read)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _keep_as_the_creators(apps, schema_editor):
    tabs = apps.get_model("workbench", "WorkbenchTab")
    states = apps.get_model("workbench", "TabUserState")
    kept = (
        tabs.objects.filter(created_by__isnull=False)
        .exclude(draft="", unread=False)
        .values_list("pk", "created_by_id", "draft", "unread")
    )
    states.objects.bulk_create(
        (
            states(tab_id=pk, user_id=user, draft=draft, unread=unread)
            for pk, user, draft, unread in kept.iterator()
        ),
        batch_size=1000,
    )


def _back_to_the_tab(apps, schema_editor):
    tabs = apps.get_model("workbench", "WorkbenchTab")
    states = apps.get_model("workbench", "TabUserState")
    for state in states.objects.filter(user_id=models.F("tab__created_by_id")).iterator():
        tabs.objects.filter(pk=state.tab_id).update(draft=state.draft, unread=state.unread)


class Migration(migrations.Migration):
    dependencies = [
        ("workbench", "0005_workspace_in_core"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="workbenchtab",
            name="model",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="workbenchtab",
            name="session_model",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.CreateModel(
            name="TabUserState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("unread", models.BooleanField(default=False)),
                ("draft", models.TextField(blank=True, default="")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "tab",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="user_states",
                        to="workbench.workbenchtab",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["user", "tab"], name="tab_state_user")],
                "constraints": [
                    models.UniqueConstraint(fields=("tab", "user"), name="one_tab_state_per_user")
                ],
            },
        ),
        migrations.RunPython(_keep_as_the_creators, _back_to_the_tab),
        migrations.RemoveField(
            model_name="workbenchtab",
            name="draft",
        ),
        migrations.RemoveField(
            model_name="workbenchtab",
            name="unread",
        ),
    ]
