"""The job queue over SQL (store) and the process that runs jobs (runner)."""
