"""Serve files from the downloads folder."""

import os

BASE = "/srv/downloads"


def read_download(name):
    path = os.path.join(BASE, name)
    with open(path, "rb") as fh:
        return fh.read()


def list_downloads():
    return sorted(os.listdir(BASE))
