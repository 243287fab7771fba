"""/docs with Swagger UI served from the package (no CDN: these machines have no internet)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

SWAGGER_DIR = Path(__file__).parent / "static" / "swagger"
ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Conveyor API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        # Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSETS_PATH + "/{name}")
async def swagger_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:  # only the listed files: a path parameter never walks the disk
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(
        SWAGGER_DIR / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"}
    )
