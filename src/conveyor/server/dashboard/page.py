"""The dashboard page at `/` and its assets under `/dashboard/assets/`, all from the package.

Plain HTML, CSS and JavaScript modules: nothing to build at install time and nothing loaded from
the internet (the Content-Security-Policy of conveyor.server.headers forbids it). The page talks
only to the REST API.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from conveyor.server.headers import ASSET_HEADERS, PAGE_HEADERS
from conveyor.server.version import package_version

ASSETS_DIR = Path(__file__).resolve().parent.parent / "static" / "dashboard"
ASSETS_PATH = "/dashboard/assets"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> HTMLResponse:
    return HTMLResponse(index_html(), headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})


@cache
def index_html() -> str:
    return (
        (ASSETS_DIR / "index.html")
        .read_text(encoding="utf-8")
        .replace("{{version}}", package_version())
    )


class Assets(StaticFiles):
    """The dashboard's files; browsers revalidate them (ETag) so that an upgrade shows at once."""

    def __init__(self) -> None:
        super().__init__(directory=ASSETS_DIR)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers.update(ASSET_HEADERS)
        return response
