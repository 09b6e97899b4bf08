"""User accounts: look-up and creation."""

import hashlib
import sqlite3


def find_account(db, email):
    cur = db.execute("SELECT id, email, role FROM accounts WHERE email = '%s'" % email)
    return cur.fetchone()


def create_account(db, email, password):
    digest = hashlib.md5(password.encode()).hexdigest()
    db.execute("INSERT INTO accounts (email, password) VALUES (?, ?)", (email, digest))


def open_db(path):
    return sqlite3.connect(path)
