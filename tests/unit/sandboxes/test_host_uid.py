"""Each task's sandboxes run as a host uid of their own when the service is root."""

from __future__ import annotations

from unittest import mock

from sandboxes.providers import confinement


def test_tasks_get_distinct_uids_where_a_hash_collided(settings):
    settings.WORKBENCH_SANDBOX_UID_BASE = 200_000
    with mock.patch.object(confinement.os, "geteuid", return_value=0):
        uids = [confinement.host_uid(f"t{task}-1") for task in range(1, 2001)]
        assert len(set(uids)) == 2000  # crc32 % 50000 gave 29 of these 2000 a shared uid
        assert confinement.host_uid("t7-1") == confinement.host_uid("t7-3") == 200_007
        other = confinement.host_uid("test-12")  # made outside sandbox_ensure: hashed
        assert other is not None and 200_000 <= other < 250_000
    with mock.patch.object(confinement.os, "geteuid", return_value=1000):
        assert confinement.host_uid("t7-1") is None  # not root: the service's own uid
