"""Keep `company_names` to organisations: drop the places, people and generic phrases a small model lists.

Why a filter and not only training: the 270M adapter copies capitalized names from the item into
`company_names` ("China", "Andrew Ng", "Top AI Companies" on a long-form newsletter), and the
annotations hold such entries rarely (3 of 238: "China", "Saudi Arabia", "Elon Musk"). A name is
dropped only when a table below says what it is; anything unknown is kept, so a real company is never
lost to a guess. The tables are data (lower-cased, matched on the whole name); the one rule that is
not a lookup is the person shape: two or three capitalized words whose first is a given name.

Serving, evaluation and the workflow all get analyses from `inference.analyzer`, which applies
`organisations` to every answer, so the figures measure what users get.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _table(text: str, sep: str | None = None) -> frozenset[str]:
    """A lower-cased name table from a block of text (`sep` "," keeps multi-word names whole)."""
    return frozenset(name.strip().lower() for name in text.replace("\n", " ").split(sep) if name.strip())


_PLACE_LINES = """
afghanistan, albania, algeria, argentina, armenia, australia, austria, azerbaijan, bahrain, bangladesh, belarus,
belgium, bolivia, bosnia, brazil, bulgaria, cambodia, cameroon, canada, chile, china, colombia, croatia, cuba,
cyprus, czechia, czech republic, denmark, ecuador, egypt, estonia, ethiopia, finland, france, georgia, germany,
ghana, greece, hungary, iceland, india, indonesia, iran, iraq, ireland, israel, italy, jamaica, japan, jordan,
kazakhstan, kenya, kuwait, laos, latvia, lebanon, libya, lithuania, luxembourg, malaysia, malta, mexico, moldova,
mongolia, morocco, myanmar, nepal, netherlands, new zealand, nigeria, north korea, norway, oman, pakistan,
palestine, panama, paraguay, peru, philippines, poland, portugal, qatar, romania, russia, rwanda, saudi arabia,
senegal, serbia, singapore, slovakia, slovenia, somalia, south africa, south korea, korea, spain, sri lanka,
sudan, sweden, switzerland, syria, taiwan, tanzania, thailand, tunisia, turkey, turkiye, uganda, ukraine,
united arab emirates, uae, united kingdom, uk, u.k., great britain, britain, england, scotland, wales,
united states, united states of america, us, u.s., usa, u.s.a., america, uruguay, uzbekistan, venezuela, vietnam,
yemen, zambia, zimbabwe, hong kong, macau,
europe, asia, africa, oceania, antarctica, north america, south america, latin america, middle east,
asia pacific, apac, emea, the gulf, scandinavia, the west,
silicon valley, bay area, wall street, washington, washington d.c., washington dc, beijing, shanghai, shenzhen,
hangzhou, tokyo, seoul, london, paris, berlin, munich, amsterdam, dublin, zurich, toronto, montreal, vancouver,
new york, new york city, nyc, san francisco, los angeles, seattle, boston, austin, texas, california
"""

PLACES = _table(_PLACE_LINES, ",")
"""Countries, regions and cities, lower-cased (multi-word names stay whole)."""

GENERIC = _table(
    """
    ai, a.i., artificial intelligence, llm, llms, big tech, tech, technology, the government, government,
    governments, the industry, industry, the company, company, companies, startup, startups, researchers,
    developers, users, investors, chinese, american, european, japanese, korean, indian, british, french,
    german, russian, israeli, sponsor, sponsored, sponsored ad, ad, unknown, none, n/a, other, others
    """,
    ",",
)
"""Whole names that are not an organisation: descriptors, demonyms, placeholders."""

GENERIC_WORDS = _table(
    """companies startups firms researchers developers investors governments countries users engineers
    teams providers vendors makers giants rivals competitors hyperscalers"""
)
"""Plural nouns that make a phrase generic ("Top AI Companies", "Chinese AI startups"). Not "labs":
"Eleven Labs" is a company."""

GENERIC_OPENERS = _table("top major leading several many other various some most big")
"""First words of a generic phrase ("Top AI Companies", "Major cloud providers")."""

GIVEN_NAMES = _table(
    """
    aaron adam aidan alan albert alex alexander alexandr alexis alice amanda amy ana andrea andrej andrew andy
    angela anna anne anthony aravind arthur ashley barack ben benjamin bill bob brad brian bruce carl carlos
    caroline catherine charles chris christian christina christopher clara clement colin craig dan daniel
    danielle dario dave david demis dennis diana donald doug douglas dylan ed edward elizabeth elon emad emily
    emma eric erik ethan fei-fei frank gary gavin geoffrey george grace greg gregory guillermo hannah harry
    helen henry hugo ian ilya isaac jack jacob jake james jamie jan jane jared jason jeff jeffrey jennifer
    jensen jeremy jerome jessica jim joanna joe joel john jon jonathan jony jordan joseph josh joshua julia
    julian justin karen kate katherine keith kevin kim kyle larry laura lauren lee leo linda lisa liz logan
    lucas luke marc marcus margaret maria marie mark martin mary masayoshi matt matthew max megan melanie
    michael michelle mike mira mohammed mustafa nancy naomi nat natalie nathan neil nicholas nick
    nicole noah noam oliver olivia omar oscar pat patrick paul peter phil philip rachel ray rebecca reid richard
    rick rob robert robin roger ronald rose ryan sam samantha samuel sara sarah satya scott sean sebastian
    sergey shane sharon simon sophia sophie stephen steve steven sundar susan thomas tim timothy tom tony
    travis tyler victor victoria vincent walter will william xi yann zach zoe
    """
)
"""Common given names, and those of people AI news names most (Sam Altman, Jensen Huang, Andrew Ng)."""

ORG_WORDS = _table(
    """ai labs lab inc inc. corp corp. corporation co co. ltd ltd. llc plc gmbh group holdings technologies
    technology tech systems robotics capital ventures partners research studio studios games motors bank
    foundation institute university college school media networks network cloud software semiconductor
    semiconductors energy health therapeutics bio pharmaceuticals"""
)
"""Words that make a name an organisation even when it starts with a given name ("Jasper AI")."""

_WORD = re.compile(r"^[A-Z][a-z'\-.]+$")


def kind(name: str) -> str | None:
    """ "place", "person" or "generic" for a name that is not an organisation; None to keep it."""
    text = " ".join(name.split()).strip(" ,;:")
    lower = text.lower()
    if not text.strip("."):
        return "generic"
    if lower in PLACES or lower.rstrip(".") in PLACES:
        return "place"
    if lower in GENERIC or not any(c.isupper() for c in text):
        return "generic"
    words = lower.split()
    if words[-1] in GENERIC_WORDS or (len(words) > 1 and words[0] in GENERIC_OPENERS):
        return "generic"
    parts = text.split()
    if (
        2 <= len(parts) <= 3
        and words[0] in GIVEN_NAMES
        and all(_WORD.match(p) for p in parts)
        and not any(w in ORG_WORDS for w in words)
    ):
        return "person"
    return None


def organisations(names: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(names kept, in order; [(dropped name, its kind)])."""
    kept, dropped = [], []
    for name in names:
        what = kind(name)
        if what is None:
            kept.append(name)
        else:
            dropped.append((name, what))
    return kept, dropped
