"""Events recorded before drafts and unread became per member carry the tab's `draft` and
`unread` in every `tab.updated`, for everyone: a resume would replay another member's old
draft. Strip them (the clients take their own from the snapshot and `tab.user_state`)."""

from django.db import migrations

PRIVATE = ("draft", "unread")


def _strip(apps, schema_editor):
    events = apps.get_model("core", "Event")
    old = events.objects.filter(name="tab.updated", data__has_key="draft").only("pk", "data")
    batch = []
    for event in old.iterator(chunk_size=1000):
        for key in PRIVATE:
            event.data.pop(key, None)
        batch.append(event)
        if len(batch) == 1000:
            events.objects.bulk_update(batch, ["data"])
            batch = []
    events.objects.bulk_update(batch, ["data"])


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_event_audience"),
        ("workbench", "0006_per_user_tab_state"),
    ]

    # Not reversible in content (the drafts are gone from the log, as intended).
    operations = [migrations.RunPython(_strip, migrations.RunPython.noop)]
