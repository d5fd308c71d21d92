"""Adapters that let other frameworks use the app's collections and models."""
