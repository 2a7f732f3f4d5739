"""plots package."""
