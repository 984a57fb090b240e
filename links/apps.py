from django.apps import AppConfig


class LinksConfig(AppConfig):
    name = "links"
    verbose_name = "Short links"
