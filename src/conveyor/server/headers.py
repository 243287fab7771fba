"""The headers of the server's HTML pages (the dashboard, /docs) and of their assets.

The pages load only this server's own files (scripts, styles, images, the API), never inline
script and nothing from elsewhere, so that an injected string cannot run as script even if it
reached a page. They may not be framed by another site (clickjacking), browsers may not guess a
file's type from its content, and no page sends its address to another site as a referrer.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # Swagger UI draws some icons from data: URLs
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **ASSET_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Referrer-Policy": "no-referrer",
}
