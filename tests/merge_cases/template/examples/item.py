import sqlite3


def find_user(db_path, name):
    conn = sqlite3.connect(db_path)
    rows = conn.execute(f"SELECT id, email FROM users WHERE name = '{name}'").fetchall()
    return rows[0] if rows else None


def average(values):
    return sum(values) / len(values)
