"""Bundled task specs and curated schemas, one folder per dataset."""
