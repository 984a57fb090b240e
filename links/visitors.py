"""Who is visiting: only people following a link count as clicks."""

from functools import lru_cache

from crawlerdetect import CrawlerDetect

_detector = CrawlerDetect()


@lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    # An empty User-Agent is a script, not a person.
    return not user_agent or _detector.isCrawler(user_agent)


def is_counted_visit(*, method: str, user_agent: str) -> bool:
    """GET from a human browser counts; HEAD (link checkers, unfurlers) and bots do not."""
    return method == "GET" and not is_bot(user_agent)
