"""Register a GitHub repository whose comments may start tasks."""

import re
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tasks_app.models import GitHubRepository

FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class Command(BaseCommand):
    help = "Register OWNER/NAME; tasks it starts belong to --user."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("full_name", metavar="OWNER/NAME")
        parser.add_argument("--user", required=True, help="Agentsite user who owns the tasks.")
        parser.add_argument("--trigger", default="", help="Trigger phrase for this repository.")
        parser.add_argument("--disable", action="store_true", help="Register it disabled.")

    def handle(self, *args: Any, full_name: str, user: str, trigger: str, disable: bool, **_: Any):
        if not FULL_NAME.fullmatch(full_name):
            raise CommandError(f"{full_name!r} is not OWNER/NAME.")
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user named {user!r}.")
        fields = {"owner": owner, "trigger": trigger, "enabled": not disable}
        repository, created = GitHubRepository.objects.update_or_create(
            full_name__iexact=full_name,
            defaults=fields,
            create_defaults={"full_name": full_name, **fields},
        )
        verb = "Registered" if created else "Updated"
        state = "disabled" if disable else "enabled"
        self.stdout.write(f"{verb} {repository.full_name} for {owner} ({state}).")
