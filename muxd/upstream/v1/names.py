"""Country and operator names for GET_SERVICES / GET_NUMBER.

Onlinesim wants names from its own lists, which are served live and not published in its
docs; these built-in tables use Onlinesim-style lower-case English names and
every entry can be overridden (or added) in the config: ``[v1.countries]`` maps an E.164
calling code *or any longer prefix* to a country (``"1" = "canada"``, ``"1416" = "canada"``),
``[v1.operators]`` maps MCC+MNC to an operator.

A number's country is the longest matching prefix of its digits, so the shared codes resolve:
+7 is russia except +76/+77 (kazakhstan); +1 is usa unless configured. A number with an
unknown code is reported under the code itself (``"999"``), an unknown operator under its
MCC+MNC (``"25097"``), a SIM whose operator is not known at all under :data:`UNKNOWN_OPERATOR`
(so ``any`` still equals the sum over operators).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

LOGGER = logging.getLogger(__name__)

UNKNOWN_OPERATOR = "unknown"
# The longest calling-code prefix worth looking up (country code + area code).
MAX_PREFIX = 7

COUNTRIES: dict[str, str] = {
    "1": "usa", "7": "russia", "76": "kazakhstan", "77": "kazakhstan",
    "20": "egypt", "27": "south africa", "30": "greece", "31": "netherlands", "32": "belgium",
    "33": "france", "34": "spain", "36": "hungary", "39": "italy", "40": "romania",
    "41": "switzerland", "43": "austria", "44": "united kingdom", "45": "denmark",
    "46": "sweden", "47": "norway", "48": "poland", "49": "germany", "51": "peru",
    "52": "mexico", "53": "cuba", "54": "argentina", "55": "brazil", "56": "chile",
    "57": "colombia", "58": "venezuela", "60": "malaysia", "61": "australia",
    "62": "indonesia", "63": "philippines", "64": "new zealand", "65": "singapore",
    "66": "thailand", "81": "japan", "82": "south korea", "84": "vietnam", "86": "china",
    "90": "turkey", "91": "india", "92": "pakistan", "93": "afghanistan", "94": "sri lanka",
    "95": "myanmar", "98": "iran",
    "212": "morocco", "213": "algeria", "216": "tunisia", "218": "libya", "220": "gambia",
    "221": "senegal", "225": "ivory coast", "233": "ghana", "234": "nigeria",
    "237": "cameroon", "243": "dr congo", "244": "angola", "251": "ethiopia", "254": "kenya",
    "255": "tanzania", "256": "uganda", "258": "mozambique", "260": "zambia",
    "261": "madagascar", "263": "zimbabwe",
    "351": "portugal", "352": "luxembourg", "353": "ireland", "354": "iceland",
    "355": "albania", "357": "cyprus", "358": "finland", "359": "bulgaria",
    "370": "lithuania", "371": "latvia", "372": "estonia", "373": "moldova",
    "374": "armenia", "375": "belarus", "380": "ukraine", "381": "serbia",
    "382": "montenegro", "385": "croatia", "386": "slovenia", "387": "bosnia and herzegovina",
    "389": "north macedonia", "420": "czech republic", "421": "slovakia",
    "852": "hong kong", "853": "macau", "855": "cambodia", "856": "laos", "880": "bangladesh",
    "886": "taiwan",
    "961": "lebanon", "962": "jordan", "963": "syria", "964": "iraq", "965": "kuwait",
    "966": "saudi arabia", "967": "yemen", "968": "oman", "971": "united arab emirates",
    "972": "israel", "973": "bahrain", "974": "qatar", "976": "mongolia", "977": "nepal",
    "992": "tajikistan", "993": "turkmenistan", "994": "azerbaijan", "995": "georgia",
    "996": "kyrgyzstan", "998": "uzbekistan",
}  # fmt: skip

OPERATORS: dict[int, str] = {
    # Russia
    25001: "mts", 25002: "megafon", 25099: "beeline", 25020: "tele2", 25011: "yota",
    25060: "volna", 25062: "tinkoff", 25035: "motiv",
    # Ukraine
    25501: "vodafone", 25502: "kyivstar", 25503: "kyivstar", 25506: "life", 25507: "3mob",
    # Kazakhstan
    40101: "beeline", 40102: "kcell", 40107: "altel", 40177: "tele2",
    # Belarus
    25701: "a1", 25702: "mts", 25704: "life",
    # Uzbekistan, Kyrgyzstan, Tajikistan
    43404: "beeline", 43405: "ucell", 43407: "mobiuz",
    43701: "beeline", 43705: "megacom", 43709: "o",
    43601: "tcell", 43603: "megafon", 43604: "babilon",
    # Caucasus, Moldova
    28201: "silknet", 28202: "magti", 28204: "cellfie",
    28301: "team", 28305: "viva", 28310: "ucom",
    40001: "azercell", 40002: "bakcell", 40004: "nar",
    25901: "orange", 25902: "moldcell",
    # Baltics
    24601: "telia", 24602: "bite", 24603: "tele2",
    24701: "lmt", 24702: "tele2", 24705: "bite",
    24801: "telia", 24802: "elisa", 24803: "tele2",
    # Europe
    26001: "plus", 26002: "t-mobile", 26003: "orange", 26006: "play",
    26201: "telekom", 26202: "vodafone", 26203: "o2", 26207: "o2",
    23410: "o2", 23415: "vodafone", 23420: "three", 23430: "ee", 23433: "ee",
    20801: "orange", 20810: "sfr", 20815: "free", 20820: "bouygues",
    20404: "vodafone", 20408: "kpn", 20416: "odido",
    21401: "vodafone", 21403: "orange", 21404: "yoigo", 21407: "movistar",
    22201: "tim", 22210: "vodafone", 22250: "iliad", 22288: "windtre",
    23001: "t-mobile", 23002: "o2", 23003: "vodafone",
    22601: "vodafone", 22603: "telekom", 22605: "digi", 22610: "orange",
    24001: "telia", 24002: "tre", 24007: "tele2", 24008: "telenor",
    24405: "elisa", 24412: "dna", 24491: "telia",
    28601: "turkcell", 28602: "vodafone", 28603: "turk telekom",
    # USA
    310260: "t-mobile", 310410: "at&t", 311480: "verizon",
}  # fmt: skip


class Names:
    """Built-in tables merged with the config's overrides; results cached per input."""

    def __init__(
        self, countries: Mapping[str, str] | None = None, operators: Mapping[str, str] | None = None
    ) -> None:
        self._countries = dict(COUNTRIES)
        for prefix, name in (countries or {}).items():
            key = prefix.strip().lstrip("+")
            if not key.isdigit() or len(key) > MAX_PREFIX:
                LOGGER.warning("v1.countries: ignoring %r (expected a calling-code prefix)", prefix)
                continue
            self._countries[key] = name.strip().lower()
        self._operators = dict(OPERATORS)
        for code, name in (operators or {}).items():
            if not code.strip().isdigit():
                LOGGER.warning("v1.operators: ignoring %r (expected MCC+MNC digits)", code)
                continue
            self._operators[int(code)] = name.strip().lower()
        self._country_cache: dict[str, str] = {}

    def country(self, number: str, country_id: int | None = None) -> str:
        """The country of ``+digits`` (longest known prefix), else its calling code."""
        cached = self._country_cache.get(number)
        if cached is not None:
            return cached
        digits = number.lstrip("+")
        name = None
        for length in range(min(MAX_PREFIX, len(digits)), 0, -1):
            name = self._countries.get(digits[:length])
            if name is not None:
                break
        if name is None:
            name = str(country_id) if country_id is not None else digits[:3]
        self._country_cache[number] = name
        return name

    def operator(self, mcc_mnc: int | None) -> str:
        if mcc_mnc is None:
            return UNKNOWN_OPERATOR
        return self._operators.get(mcc_mnc) or str(mcc_mnc)
