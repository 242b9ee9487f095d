"""Helpers for the app's tests: a synthetic scorer and a server started on a free port."""
