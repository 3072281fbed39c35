"""Real dependencies: requirements resolved by uv into locks, locks installed into environments."""
