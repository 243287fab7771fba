"""/docs works offline (Swagger UI from the package), /openapi.json describes the whole API."""

from __future__ import annotations

import re

import pytest

from conveyor.api.schemas import API_PREFIX
from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio


async def test_docs_load_only_local_assets_and_every_asset_is_served(served: Served) -> None:
    page = await served.http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls, page.text
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by this server"
        asset = await served.http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500
    assert "https://" not in page.text and "http://" not in page.text
    assert "<script>" not in page.text, "no inline script: the CSP allows this server's files only"
    assert 'data-openapi-url="/openapi.json"' in page.text
    init = (await served.http.get("/docs/assets/swagger-init.js")).text
    assert "validatorUrl: null" in init  # no badge from validator.swagger.io


async def test_assets_have_their_media_types_and_unknown_names_are_404(served: Served) -> None:
    js = await served.http.get("/docs/assets/swagger-ui-bundle.js")
    css = await served.http.get("/docs/assets/swagger-ui.css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert css.headers["content-type"].startswith("text/css")
    assert (await served.http.get("/docs/assets/README.md")).status_code == 404
    assert (await served.http.get("/docs/assets/..%2F..%2Fapp.py")).status_code == 404


async def test_openapi_describes_every_endpoint_and_its_refs_resolve(served: Served) -> None:
    response = await served.http.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    p = API_PREFIX
    assert operations == {
        ("POST", f"{p}/tasks"),
        ("GET", f"{p}/tasks"),
        ("POST", f"{p}/tasks/batch"),
        ("GET", f"{p}/tasks/{{task_id}}"),
        ("DELETE", f"{p}/tasks/{{task_id}}"),
        ("GET", f"{p}/tasks/{{task_id}}/result"),
        ("POST", f"{p}/tasks/results"),
        ("POST", f"{p}/tasks/{{task_id}}/cancel"),
        ("POST", f"{p}/tasks/{{task_id}}/retry"),
        ("GET", f"{p}/tasks/{{task_id}}/why"),
        ("POST", f"{p}/tasks/bulk"),
        ("GET", f"{p}/bulk/{{bulk_id}}"),
        ("GET", f"{p}/failures"),
        ("GET", f"{p}/workers"),
        ("POST", f"{p}/workers"),
        ("GET", f"{p}/workers/{{worker_id}}"),
        ("DELETE", f"{p}/workers/{{worker_id}}"),
        ("POST", f"{p}/workers/{{worker_id}}/heartbeat"),
        ("POST", f"{p}/workers/{{worker_id}}/lease"),
        ("POST", f"{p}/workers/{{worker_id}}/report"),
        ("POST", f"{p}/schedules"),
        ("GET", f"{p}/schedules"),
        ("GET", f"{p}/schedules/{{name}}"),
        ("DELETE", f"{p}/schedules/{{name}}"),
        ("GET", f"{p}/status"),
        ("GET", f"{p}/monitor"),
        ("GET", f"{p}/status/history"),
        ("GET", f"{p}/search/tasks"),
        ("GET", f"{p}/tasks/{{task_id}}/graph"),
        ("GET", f"{p}/workflows"),
        ("GET", f"{p}/workflows/{{task_id}}"),
        ("POST", f"{p}/queues/{{queue}}/pause"),
        ("POST", f"{p}/queues/{{queue}}/resume"),
        ("POST", f"{p}/schedules/{{name}}/pause"),
        ("POST", f"{p}/schedules/{{name}}/resume"),
        ("POST", f"{p}/pause"),
        ("POST", f"{p}/resume"),
        ("GET", f"{p}/pauses"),
        ("POST", f"{p}/workers/drain"),
        ("POST", f"{p}/workers/stop"),
        ("PUT", f"{p}/limits/{{limit}}"),
        ("GET", f"{p}/limits"),
        ("GET", f"{p}/limits/{{limit}}"),
        ("DELETE", f"{p}/limits/{{limit}}"),
        ("GET", "/health"),
    }
    refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', response.text))
    assert refs <= set(schema["components"]["schemas"])
    submit = schema["paths"][f"{p}/tasks"]["post"]["responses"]
    assert {"200", "201", "413", "422", "503"} <= set(submit)
    report = schema["paths"][f"{p}/workers/{{worker_id}}/report"]["post"]["responses"]
    assert report["409"]["content"]["application/json"]["schema"]["$ref"].endswith("ReportBatchOut")


async def test_home_page_links_docs_and_status(served: Served) -> None:
    page = await served.http.get("/")
    assert page.status_code == 200
    assert 'href="/docs"' in page.text
    assert f'href="{API_PREFIX}/status"' in page.text
    assert (await served.http.get("/no-such-page")).status_code == 404


PAGES = ["/", "/docs"]
ASSETS = [
    "/docs/assets/swagger-ui.css",
    "/docs/assets/swagger-init.js",
    "/dashboard/assets/app.css",
]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_carry_a_strict_content_security_policy_and_framing_headers(
    served: Served, path: str
) -> None:
    page = await served.http.get(path)
    assert page.status_code == 200
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"  # no inline script, nothing from elsewhere
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["object-src"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ASSETS)
async def test_assets_are_not_sniffed(served: Served, path: str) -> None:
    asset = await served.http.get(path)
    assert asset.status_code == 200
    assert asset.headers["x-content-type-options"] == "nosniff"


async def test_the_openapi_document_states_the_keys_every_map_takes(served: Served) -> None:
    """A map whose keys follow a pattern says so with `propertyNames`: pydantic's own
    `patternProperties` lets any other key through (a label key holding NUL, say), so a
    generated client or a fuzzer would send what the server refuses."""
    text = (await served.http.get("/openapi.json")).text
    assert "patternProperties" not in text
