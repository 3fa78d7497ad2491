"""Build the `agencies` table: one row per agency in its current version, across all sources."""

from __future__ import annotations

import logging

from .geocode import Location, geocode
from .gitrepo import commit_trailer
from .history import AgencyState
from .ids import agency_slug
from . import DEFAULT_MAP_URL
from .sources import REPORTED, RING_MAP

log = logging.getLogger(__name__)

AGENCY_COLUMNS = {
    "id": str,
    "name": str,
    "agency_type": str,
    "listed_as": str,
    "city": str,
    "county": str,
    "state": str,
    "address": str,
    "latitude": float,
    "longitude": float,
    "geocode_source": str,
    "data_quality": str,
    "joined": str,
    "video_requests": int,
    "profile_url": str,
    "reported_on": str,
    "evidence": str,
    "source": str,
    "source_url": str,
    "reported_source_url": str,
    "status": str,
    "first_seen": str,
    "last_seen": str,
    "ended_on": str,
    "times_rejoined": int,
    "commit_hash": str,
}


class CachedGeocoder:
    """Geocode through a cache of earlier builds' results.

    Loading the gazetteers takes seconds, which would dominate an incremental
    build, so they are loaded only when a place is not in the cache.
    """

    def __init__(self, cached: dict[tuple, Location]):
        self.cached = cached
        self.used: dict[tuple, Location] = {}

    def __call__(self, city: str | None, state: str, agency_name: str) -> Location:
        # The agency name matters only for county agencies that have no city.
        key = (city or "", state, "" if city else agency_name)
        location = self.cached.get(key)
        if location is None:
            location = geocode(city, state, agency_name)
        self.used[key] = location
        return location


def build_agency_rows(
    states: dict[str, dict[str, AgencyState]],
    commit_messages: dict[str, str],
    geocoder: CachedGeocoder,
) -> tuple[list[dict], dict[tuple[str, str], str]]:
    """Merge every source's agencies into rows, and map (source, source id) to row id.

    A map agency and a reported one with the same name and state are one
    agency: the row shows the map's version and keeps the report's citation.
    """
    rows: dict[str, dict] = {}
    row_states: dict[str, list[AgencyState]] = {}
    row_status: dict[str, str] = {}
    id_map: dict[tuple[str, str], str] = {}
    key_to_row: dict[str, str] = {}

    for agency_id, state in sorted(states.get(RING_MAP.namespace, {}).items()):
        row = map_row(state, commit_messages)
        rows[agency_id] = row
        row_states[agency_id] = [state]
        row_status[agency_id] = agency_status(state, None)
        id_map[(RING_MAP.path, agency_id)] = agency_id
        for former_id in state.former_ids:
            id_map[(RING_MAP.path, former_id)] = agency_id
        key_to_row.setdefault(agency_slug(row["name"], row["state"]), agency_id)

    for agency_id, state in sorted(states.get(REPORTED.namespace, {}).items()):
        reported = reported_row(state)
        row_id = key_to_row.get(agency_id)
        if row_id is None:
            rows[agency_id] = reported
            row_states[agency_id] = [state]
            row_status[agency_id] = agency_status(None, state)
            row_id = agency_id
        else:
            merge_reported(rows[row_id], reported)
            row_states[row_id].append(state)
        id_map[(REPORTED.path, agency_id)] = row_id
        for former_id in state.former_ids:
            id_map[(REPORTED.path, former_id)] = row_id

    for row_id, row in rows.items():
        row.update(status_columns(row_states[row_id], row_status[row_id]))
        add_location(row, geocoder)
    return [rows[row_id] for row_id in sorted(rows)], id_map


def map_row(state: AgencyState, commit_messages: dict[str, str]) -> dict:
    record = state.record
    source_url = commit_trailer(commit_messages.get(state.commit_hash, ""), "Source-URL")
    has_point = record.get("latitude") is not None and record.get("longitude") is not None
    return {
        "id": record["id"],
        "name": record["name"],
        "agency_type": record.get("agency_type"),
        "listed_as": "agency",
        "city": record.get("city"),
        "state": record.get("state"),
        "address": record.get("address"),
        "latitude": record.get("latitude"),
        "longitude": record.get("longitude"),
        "geocode_source": "source:point" if has_point else None,
        "joined": record.get("active_date"),
        "video_requests": record.get("video_requests"),
        "profile_url": record.get("profile_url"),
        "source": RING_MAP.path,
        "source_url": source_url or DEFAULT_MAP_URL,
        "commit_hash": state.commit_hash,
    }


def reported_row(state: AgencyState) -> dict:
    record = state.record
    return {
        "id": record["id"],
        "name": record["agency_name"],
        "agency_type": record.get("agency_type"),
        "listed_as": record.get("listed_as"),
        "city": record.get("city"),
        "state": record.get("state"),
        "joined": record.get("joined"),
        "reported_on": record.get("reported_on"),
        "evidence": record.get("evidence"),
        "source": REPORTED.path,
        "source_url": record.get("source_url"),
        "reported_source_url": record.get("source_url"),
        "commit_hash": state.commit_hash,
    }


def merge_reported(row: dict, reported: dict) -> None:
    row["source"] = f"{row['source']}, {reported['source']}"
    row["reported_source_url"] = reported["reported_source_url"]
    row["reported_on"] = reported["reported_on"]
    row["evidence"] = reported["evidence"]
    if row["joined"] is None:
        row["joined"] = reported["joined"]


def agency_status(map_state: AgencyState | None, reported_state: AgencyState | None) -> str:
    """Return active or ended for agencies on Ring's map, reported or withdrawn otherwise.

    A cited page shows that an agency partnered with Ring at some time, not
    that it still does, so reported-only rows are never called active. A row
    removed from the reported file was withdrawn from this data, which says
    nothing about the partnership.
    """
    if map_state is not None:
        return "active" if map_state.present else "ended"
    return "reported" if reported_state.present else "withdrawn"


def status_columns(states: list[AgencyState], status: str) -> dict:
    active = any(state.present for state in states)
    ended = [state.ended_on for state in states if state.ended_on]
    return {
        "status": status,
        "first_seen": min(state.first_seen for state in states),
        "last_seen": max(state.last_seen for state in states),
        "ended_on": None if active else max(ended),
        "times_rejoined": sum(state.times_rejoined for state in states),
    }


def add_location(row: dict, geocoder: CachedGeocoder) -> None:
    """Fill county, and coordinates where the source gave none, from the gazetteer."""
    location = geocoder(row["city"], row["state"], row["name"])
    row["county"] = location.county
    if row.get("geocode_source"):
        return
    row["latitude"] = location.latitude
    row["longitude"] = location.longitude
    row["geocode_source"] = location.geocode_source
    row["data_quality"] = location.quality_flag
    if location.quality_flag:
        log.info("Location of %s (%s): %s", row["id"], row["state"], location.quality_flag)
