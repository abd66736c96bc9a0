"""Where installed packages declare their search spaces (no torch needed to read it)."""

ENTRY_POINT_GROUP = "oneshot.spaces"
"""The entry point group: ``name = "package.module:SupernetClass"`` registers space ``name``."""
