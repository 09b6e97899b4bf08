"""The Files API endpoints the emulator serves: upload, list, retrieve metadata, delete.

    POST   /v1/files            multipart/form-data with a `file` part
    GET    /v1/files            newest first, one page (`data`, `has_more`, `first_id`, `last_id`, `next_page`)
    GET    /v1/files/ID         metadata
    DELETE /v1/files/ID         `{"id", "type": "file_deleted"}`

Every call needs `anthropic-beta: files-api-2025-04-14`, as the API's reference says
(https://platform.claude.com/docs/en/api/files-create: "The Files API is currently in beta. To use the
Files API, you'll need to include the beta feature header"); without it the answer is a 400.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING

from batchpilot.emulator.http.wire import Request, Response, bad_request, not_found

if TYPE_CHECKING:
    from batchpilot.emulator.app import App

FILES_BETA = "files-api-2025-04-14"
MAX_FILE_BYTES = 500 * 1024 * 1024  # the Files API's per-file limit


def has_files_beta(request: Request) -> bool:
    return FILES_BETA in (request.headers.get("anthropic-beta") or "")


def _require_beta(request: Request) -> None:
    if not has_files_beta(request):
        raise bad_request(f"The Files API is in beta: send the header anthropic-beta: {FILES_BETA}")


def _file_part(request: Request) -> tuple[str, str, bytes]:
    kind = request.headers.get("content-type") or ""
    if "multipart/form-data" not in kind:
        raise bad_request("POST /v1/files takes multipart/form-data with a `file` part")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + request.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True) or b""
            return part.get_filename() or "upload", part.get_content_type(), data
    raise bad_request("file: Field required")


def upload(app: "App", request: Request) -> Response:
    _require_beta(request)
    filename, mime, data = _file_part(request)
    if len(data) > MAX_FILE_BYTES:
        raise bad_request(f"file: {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit")
    return Response.json(app.files.upload(filename, mime, data).to_json())


def listing(app: "App", request: Request) -> Response:
    _require_beta(request)
    files = [f.to_json() for f in app.files.listing()]
    return Response.json({"data": files, "has_more": False, "first_id": files[0]["id"] if files else None,
                          "last_id": files[-1]["id"] if files else None, "next_page": None})


def _file_id(request: Request) -> str:
    return request.path.rstrip("/").rsplit("/", 1)[1]


def retrieve(app: "App", request: Request) -> Response:
    _require_beta(request)
    meta = app.files.get(_file_id(request))
    if meta is None:
        raise not_found(f"File not found: {_file_id(request)}")
    return Response.json(meta.to_json())


def delete(app: "App", request: Request) -> Response:
    _require_beta(request)
    if not app.files.delete(_file_id(request)):
        raise not_found(f"File not found: {_file_id(request)}")
    return Response.json({"id": _file_id(request), "type": "file_deleted"})
