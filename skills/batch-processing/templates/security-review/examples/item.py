import os
import subprocess

from flask import Flask, request, send_file

app = Flask(__name__)
UPLOADS = "/srv/app/uploads"
API_TOKEN = "sk-live-4f9a2c7e1b"


@app.route("/download")
def download():
    name = request.args["name"]
    return send_file(os.path.join(UPLOADS, name))


@app.route("/ping")
def ping():
    host = request.args.get("host", "localhost")
    out = subprocess.run(f"ping -c 1 {host}", shell=True, capture_output=True, text=True)
    return out.stdout
