"""The web dashboard: the page at `/`, its assets, and the read-only views it needs beyond the
task and worker API (text search, dependency graphs, workflows)."""
