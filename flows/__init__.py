"""Prefect flows and tasks: orchestration only. Each task runs a DVC stage in a child process."""
