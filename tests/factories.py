"""Typed factory-boy factories. States are set explicitly here, never by saving a state later."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from core.models import Membership, Workspace
from sandboxes.models import Sandbox, SandboxState
from tasks_app.models import Task
from workbench.models import TabState, WorkbenchTab


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    workspace = factory.SubFactory(WorkspaceFactory)
    title = factory.Sequence(lambda n: f"Task {n}")
    provider = "local"
    agent = "mock"


class SandboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sandbox

    task = factory.SubFactory(TaskFactory)
    provider = "local"
    agent = "mock"
    key = factory.Sequence(lambda n: f"test-{n}")
    state = SandboxState.READY
    base_url = "http://127.0.0.1:9"
    token = "secret-token"


class TabFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkbenchTab

    task = factory.SubFactory(TaskFactory)
    workspace = factory.SelfAttribute("task.workspace")
    title = factory.Sequence(lambda n: f"tab {n}")
    agent = "mock"
    state = TabState.PENDING_PROVISION
