"""Built-in v1 service filters: the senders and texts of common services' SMS.

In API v1 muxd may filter locally which SMS belong to an activation's service (``v1.filter``);
instead of each operator writing one regular expression per service, ``v1.filter_library =
true`` uses these patterns for every offered service without a rule of its own, and
``v1.filter.SERVICE = {builtin = true, ...}`` adds them to a rule's own patterns.

A service is found by its Onlinesim slug or its name (``tg`` or ``telegram``, any case). As in
every v1 filter, an SMS belongs to the service when one sender pattern or one text pattern is
found in it (case-insensitive): sender patterns are anchored here, so ``VK`` does not take
``VKUSVILL``. The patterns are a starting point: senders change, and an SMS that no pattern
knows is ``filtered`` (kept, never pushed), so watch ``muxd outbox list --state filtered``
after enabling them.
"""

from __future__ import annotations

from dataclasses import dataclass

from muxd.config import FilterRule, V1Config

__all__ = ["LIBRARY", "Service", "check_filters", "find", "resolve_filters"]


@dataclass(frozen=True, slots=True)
class Service:
    names: tuple[str, ...]  # slug first, then names Onlinesim or partners use
    senders: tuple[str, ...]
    text: tuple[str, ...]


LIBRARY: tuple[Service, ...] = (
    Service(("tg", "telegram"), (r"^telegram$",), (r"\btelegram\b", r"\bтелеграм")),
    Service(("wa", "whatsapp"), (r"^whats\s?app$",), (r"\bwhats\s?app\b", r"\bвотсап")),
    Service(
        ("vk", "vkcom", "vkontakte"),
        (r"^vk(\.?com)?$", r"^vkontakte$", r"^vk\s?id$"),
        (r"\bvk\b", r"\bvk\.com\b", r"\bvk\s?id\b", r"вконтакте"),
    ),
    Service(
        ("go", "google", "gmail", "youtube"), (r"^google$",), (r"\bG-\d{4,8}\b", r"\bgoogle\b")
    ),
    Service(
        ("fb", "facebook", "meta"), (r"^facebook$", r"^fb$"), (r"\bfacebook\b", r"\bFB-\d{4,8}\b")
    ),
    Service(("ig", "instagram"), (r"^instagram$",), (r"\binstagram\b",)),
    Service(
        ("ok", "odnoklassniki", "okru"),
        (r"^ok(\.ru)?$", r"^odnoklassniki$"),
        (r"\bok\.ru\b", r"одноклассники", r"\bodnoklassniki\b"),
    ),
    Service(("av", "avito"), (r"^avito$",), (r"\bavito\b", r"\bавито\b")),
    Service(
        ("ya", "yandex", "yandexgo"),
        (r"^yandex(\.?(go|id|taxi|eda))?$",),
        (r"\byandex\b", r"яндекс"),
    ),
    Service(("ub", "uber"), (r"^uber$",), (r"\buber\b",)),
    Service(
        ("ma", "mailru", "mail.ru"), (r"^mail\.?ru$",), (r"\bmail\.ru\b", r"\bvk\s?workmail\b")
    ),
    Service(("tw", "twitter", "x"), (r"^twitter$", r"^x$"), (r"\btwitter\b", r"\bx\.com\b")),
    Service(("ds", "discord"), (r"^discord$",), (r"\bdiscord\b",)),
    Service(("mm", "microsoft", "outlook"), (r"^microsoft$",), (r"\bmicrosoft\b",)),
    Service(("wx", "apple", "appleid"), (r"^apple$",), (r"\bapple\b",)),
    Service(("lf", "tiktok"), (r"^tiktok$",), (r"\btik\s?tok\b",)),
    Service(("am", "amazon"), (r"^amazon$",), (r"\bamazon\b",)),
    Service(("vi", "viber"), (r"^viber$",), (r"\bviber\b",)),
    Service(("wb", "wechat"), (r"^wechat$",), (r"\bwechat\b", r"\bweixin\b")),
    Service(("sg", "ozon"), (r"^ozon(\.ru)?$",), (r"\bozon\b", r"\bозон\b")),
    Service(
        ("uu", "wildberries"), (r"^wildberries$", r"^wb$"), (r"\bwildberries\b", r"вайлдберриз")
    ),
)

_BY_NAME = {name.lower(): s for s in LIBRARY for name in s.names}


def find(service: str) -> Service | None:
    """The built-in patterns of a service (by slug or name, any case), or None."""
    return _BY_NAME.get(service.lower())


def check_filters(v1: V1Config) -> tuple[str, str] | None:
    """(key, what is wrong) in ``v1.filter`` and ``v1.filter_library``; None when fine."""
    import re

    for service, rule in v1.filter.items():
        if rule.builtin and find(service) is None:
            known = ", ".join(s.names[0] for s in LIBRARY)
            return f"v1.filter.{service}.builtin", f"no built-in patterns for {service!r} ({known})"
        for kind, patterns in (("senders", rule.senders), ("text", rule.text)):
            for i, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    key = f"v1.filter.{service}.{kind}[{i}]"
                    return key, f"invalid regular expression: {exc}"
    return None


def resolve_filters(v1: V1Config) -> dict[str, FilterRule]:
    """The v1 filter rules in effect: each service's own, with the built-in patterns added
    where asked (``builtin = true``, or ``filter_library`` for services without a rule)."""
    out: dict[str, FilterRule] = {}
    for service, rule in v1.filter.items():
        known = find(service) if rule.builtin else None
        if known is None:
            out[service] = rule
            continue
        out[service] = FilterRule(
            senders=[*known.senders, *rule.senders], text=[*known.text, *rule.text]
        )
    if v1.filter_library:
        for service in v1.services:
            known = find(service)
            if service not in out and known is not None:
                out[service] = FilterRule(senders=list(known.senders), text=list(known.text))
    return out
