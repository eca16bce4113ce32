"""The model registry: versions, aliases, artifacts, lineage and the audit log."""
