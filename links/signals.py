from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from links.fastpath import bump_generation
from links.models import Link


@receiver(post_save, sender=Link)
def link_saved(sender, instance: Link, created: bool, **kwargs) -> None:
    # The fast path never caches "no such link", so a new link needs no
    # invalidation: the caches stay warm while links are being created.
    if not created:
        bump_generation(settings.SQLITE_PATH)


@receiver(post_delete, sender=Link)
def link_deleted(sender, instance: Link, **kwargs) -> None:
    bump_generation(settings.SQLITE_PATH)
