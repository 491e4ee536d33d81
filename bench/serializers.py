"""Whether the hand-built tab representation still pays: `TabOutputSerializer`'s direct
`to_representation` against DRF's field-by-field path (`generic_representation`), on the same
tab, alternated in rounds. Every tab write serializes its tab twice (event and response).

    .venv/bin/python bench/serializers.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.utils.timezone import now  # noqa: E402

from workbench.models import TabState, WorkbenchTab  # noqa: E402
from workbench.serializers import TabOutputSerializer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    stamp = now()
    tab = WorkbenchTab(
        id=uuid.uuid4(),
        workspace_id=1,
        task_id=2,
        sandbox_id=3,
        title="mock 1",
        agent="mock",
        state=TabState.READY,
        created_at=stamp,
        updated_at=stamp,
        state_changed_at=stamp,
        ready_at=stamp,
    )
    assert TabOutputSerializer(tab).data == TabOutputSerializer().generic_representation(tab)
    ways = {
        "hand-built (to_representation)": lambda: TabOutputSerializer(tab).data,
        "DRF's fields (generic_representation)": lambda: (
            TabOutputSerializer().generic_representation(tab)
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            start = time.process_time()
            for _ in range(args.calls):
                way()
            results[name].append((time.process_time() - start) / args.calls * 1e6)
    print(f"| representation of one tab | CPU per call µs, median of {args.rounds} rounds |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {sorted(values)[len(values) // 2]:.1f} |")


if __name__ == "__main__":
    main()
