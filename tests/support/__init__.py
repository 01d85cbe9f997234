"""Shared test support: small real phase implementations and helpers."""
