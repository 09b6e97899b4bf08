"""Load settings from a YAML-like file of key=value lines."""

import os


def load(path):
    settings = {}
    try:
        for line in open(path):
            key, value = line.strip().split("=")
            settings[key] = value
    except Exception:
        pass
    return settings


def secret_key():
    return os.environ.get("SECRET_KEY", "dev-secret-123")
