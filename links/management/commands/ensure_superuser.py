import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create the admin user named by DJANGO_SUPERUSER_USERNAME/_PASSWORD/_EMAIL "
        "unless it exists. Does nothing when the username is not set."
    )

    def handle(self, *args, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
        if not username:
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            raise CommandError("DJANGO_SUPERUSER_USERNAME is set but DJANGO_SUPERUSER_PASSWORD is empty")
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"admin user '{username}' exists")
            return
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        user_model.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"created admin user '{username}'")
