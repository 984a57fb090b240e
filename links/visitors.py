"""Who is visiting: only people following a link count as clicks."""

from functools import lru_cache

from crawlerdetect import CrawlerDetect

_detector = CrawlerDetect()

# The detector's regular expressions take time that grows faster than the text
# they read (an 8,000-character User-Agent held a worker's event loop for 10 s;
# 256 characters of letters cost up to about 16 ms), so they read at most this
# much. Browsers fit (Chrome's is about 120 characters, in-app browsers' about
# 250), and a bot names itself near the start.
USER_AGENT_READ = 256


@lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    # An empty User-Agent is a script, not a person.
    return not user_agent or _detector.isCrawler(user_agent)


def is_counted_visit(*, method: str, user_agent: str) -> bool:
    """GET from a human browser counts; HEAD (link checkers, unfurlers) and bots do not."""
    return method == "GET" and not is_bot(user_agent[:USER_AGENT_READ])
