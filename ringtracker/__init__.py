"""Ring Partnership Tracker: scrape Ring's agency map, build the versioned database."""

REPOSITORY_URL = "https://github.com/ring-partnership-tracker/ring-partnership-tracker"
