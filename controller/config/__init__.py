"""ccfo package."""
