"""/docs with Swagger UI served from the package (no CDN: these machines have no internet), under
the pages' Content-Security-Policy (conveyor.server.headers): the page is static HTML, and the
script that starts Swagger UI is one of the assets, not inline."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from conveyor.server.headers import ASSET_HEADERS, PAGE_HEADERS

SWAGGER_DIR = Path(__file__).parent / "static" / "swagger"
ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-init.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
OPENAPI_URL = "/openapi.json"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Conveyor API</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(OPENAPI_URL)}"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PATH}/swagger-init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})


@router.get(ASSETS_PATH + "/{name}")
async def swagger_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:  # only the listed files: a path parameter never walks the disk
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(
        SWAGGER_DIR / name,
        media_type=media_type,
        headers={**ASSET_HEADERS, "Cache-Control": "max-age=86400"},
    )
