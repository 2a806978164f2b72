"""Generic spiders, one per file; each reads its shop from a source YAML file."""
