"""toy package."""
