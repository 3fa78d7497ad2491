"""Agency identifiers and agency types, shared by the scraper and ingest."""

import re
import unicodedata

AGENCY_TYPES = ("police", "sheriff", "fire", "other")

# Checked in this order, first match wins. "Fire Marshal" comes before the police
# patterns because a plain "Marshal" (a town marshal) is a law-enforcement officer.
_TYPE_PATTERNS = (
    ("fire", re.compile(r"\bfire\s+marshal", re.IGNORECASE)),
    ("sheriff", re.compile(r"\bsheriff", re.IGNORECASE)),
    (
        "police",
        re.compile(
            r"\b(police|public\s+safety|marshal|constable|highway\s+patrol|state\s+patrol"
            r"|troopers?|law\s+enforcement)",
            re.IGNORECASE,
        ),
    ),
    (
        "fire",
        re.compile(
            r"\b(fire|rescue|ems|emergency\s+medical|ambulance)\b",
            re.IGNORECASE,
        ),
    ),
)


def classify_agency(name: str) -> str:
    """Classify an agency by its name as police, sheriff, fire or other.

    Combined departments named "Public Safety" count as police, because law enforcement
    is what makes them Ring partners. A name with both "Police" and "Fire" also counts
    as police.
    """
    for agency_type, pattern in _TYPE_PATTERNS:
        if pattern.search(name or ""):
            return agency_type
    return "other"


def agency_slug(name: str, state: str | None) -> str:
    """Build a stable id such as ``troy-police-department-mi`` from a name and a USPS code.

    Accents are folded to ASCII and apostrophes are dropped, so "Sheriff's Office" and
    "Sheriff’s Office" give the same slug. NOTE: two agencies with the same name in the
    same state get the same slug, and the validation gate rejects the snapshot then.
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"['’`]", "", text.lower())
    text = text.replace("&", " and ")
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if state:
        slug = f"{slug}-{state.lower()}" if slug else state.lower()
    return slug
