"""Internals shared by labkit's modules; not a public API."""
