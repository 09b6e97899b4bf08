"""Wrappers around shell commands used by the admin panel."""

import subprocess


def disk_usage(directory):
    return subprocess.check_output("du -sh " + directory, shell=True).decode()


def ping(host):
    result = subprocess.run(["ping", "-c", "1", host], capture_output=True)
    return result.returncode == 0
