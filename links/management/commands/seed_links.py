from django.core.management.base import BaseCommand
from django.db import IntegrityError, transaction

from links.models import Link
from links.slugs import generate_slug


class Command(BaseCommand):
    help = (
        "Create COUNT links to https://example.com/seed/<n> in bulk (for benchmarks), "
        "printing each new slug on its own line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--batch", type=int, default=10_000)
        parser.add_argument("--quiet", action="store_true", help="do not print the slugs")

    def handle(self, *args, count: int, batch: int, quiet: bool, **options):
        start = Link.objects.count()
        made = 0
        while made < count:
            size = min(batch, count - made)
            links = [
                Link(
                    slug=generate_slug(),
                    original_url=f"https://example.com/seed/{start + made + i}",
                    is_canonical=True,
                )
                for i in range(size)
            ]
            try:
                with transaction.atomic():
                    created = Link.objects.bulk_create(links)
            except IntegrityError:
                continue  # a rare slug collision: the batch is rolled back and made again
            if not quiet:
                self.stdout.write("\n".join(link.slug for link in created))
            made += size
        self.stderr.write(f"seeded {count} links")
