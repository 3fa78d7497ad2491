"""Ring Partnership Tracker: scrape Ring's agency map, build the versioned database."""

# The KML export of Ring's Active Agency Map (a Google My Maps map), in the
# NetworkLink form that points at the current KML. The scraper reads it by
# default, and ingest records it on map rows whose commit names no source.
DEFAULT_MAP_URL = (
    "https://www.google.com/maps/d/kml?mid=1eYVDPh5itXq5acDT9b0BVeQwmESBa4cB&forcekml=1&nl=1"
)
