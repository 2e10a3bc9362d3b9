"""Structured configs (Hydra ConfigStore) and their validation."""
from .schema import OPERATIONAL_KEYS, SSDConfig, register
from .validate import validate

__all__ = ["OPERATIONAL_KEYS", "SSDConfig", "register", "validate"]
