from django.core.management.base import BaseCommand

from links.services import issue_api_key


class Command(BaseCommand):
    help = "Create a management API key. The key is printed once, as the last word; only its hash is kept."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="who or what the key is for")

    def handle(self, *args, name: str, **options):
        key, plain = issue_api_key(name=name)
        self.stdout.write(
            f"API key '{key.name}' created. Send it as 'Authorization: Bearer <key>'. Key: {plain}"
        )
