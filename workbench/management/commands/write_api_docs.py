"""Write docs/api.md (the API's errors) from core/error_codes.py and the views' schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from drf_spectacular.generators import SchemaGenerator

from core.error_codes import api_doc

API_DOC = Path(settings.BASE_DIR) / "docs" / "api.md"


def current_api_doc() -> str:
    return api_doc(SchemaGenerator().get_schema(request=None, public=True))


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        API_DOC.write_text(current_api_doc())
        self.stdout.write(f"wrote {API_DOC}")
