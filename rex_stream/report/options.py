"""What a report shows: which entries (``--limit``, ``--filter``), how large its pictures are
and how many cards a page holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from rex_stream.errors import ConfigError
from rex_stream.report.reading import EXPLAINED, FAILED, RUNNING, Entry

FILTER_KEYS = ("class", "status")


@dataclass(frozen=True)
class ReportOptions:
    """Choices of one report."""

    limit: int | None = None
    #: ``class`` → class indices or names kept, ``status`` → statuses kept
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    page_size: int = 200
    picture_size: int = 224
    thumbnail_size: int = 64
    title: str = ""
    #: drawing processes (None: one per core for a large report, 0: none)
    workers: int | None = None

    def keeps(self, entry: Entry) -> bool:
        """Whether the filters keep ``entry``."""
        classes = self.filters.get("class")
        if classes and not any(_class_matches(entry, c) for c in classes):
            return False
        statuses = self.filters.get("status")
        return not statuses or entry.status in statuses


def _class_matches(entry: Entry, wanted: str) -> bool:
    if entry.class_id is None:
        return False
    if wanted.lstrip("-").isdigit():
        return entry.class_id == int(wanted)
    return entry.class_label.rsplit(" (", 1)[0].lower() == wanted.lower()


def parse_filters(texts: list[str]) -> dict[str, tuple[str, ...]]:
    """``class=301`` / ``class=ladybug`` / ``status=failed`` (repeatable; values of one key are
    alternatives, a comma separates several)."""
    filters: dict[str, tuple[str, ...]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in FILTER_KEYS or not value.strip():
            raise ConfigError(
                f"--filter {text!r}: expected class=N|NAME or status=explained|failed|running",
                key="--filter",
            )
        values = tuple(v.strip() for v in value.split(",") if v.strip())
        if key == "status":
            unknown = [v for v in values if v not in (EXPLAINED, FAILED, RUNNING)]
            if unknown:
                raise ConfigError(
                    f"--filter status={','.join(unknown)}: a status is explained, failed or "
                    "running",
                    key="--filter",
                )
        filters[key] = filters.get(key, ()) + values
    return filters
