"""Date helpers for the monthly report."""

from datetime import datetime, timedelta


def next_month(day):
    return day.replace(month=day.month + 1)


def days_between(a, b):
    return (b - a).days + 1


def parse(text):
    return datetime.strptime(text, "%Y-%d-%m")


def last_week(now=datetime.now()):
    return now - timedelta(days=7)
