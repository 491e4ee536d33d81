"""Create (or reuse) the demo user, workspace and API token, and print how to use them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from core import services as core_services
from core.models import Workspace


class Command(BaseCommand):
    help = "Create the demo user (demo/demo), a demo workspace and an API token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username="demo", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password("demo")
            user.save()
        workspace = Workspace.objects.filter(memberships__user=user, name="Demo").first()
        if workspace is None:
            workspace = core_services.workspace_create(user=user, name="Demo")
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Workbench demo account",
                    f"  workbench       : {base_url}/  (log in as demo / demo)",
                    f"  user / password : demo / demo  (also an admin: {base_url}/admin/)",
                    f"  workspace id    : {workspace.pk}",
                    f"  API token       : {token.key}",
                    f"  API docs        : {base_url}/api/docs/",
                    "  try it          : "
                    f"curl -H 'Authorization: Token {token.key}' {base_url}/api/workspaces/",
                    "",
                ]
            )
        )
