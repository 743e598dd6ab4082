"""Bundled model configs: HF config.json values (trimmed to the keys that cost) with their source."""
