"""Headless Chromium (Debian's package) driven by Playwright, for admin pages people click."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium_page(*, width: int = 1400, height: int = 900) -> Iterator[Page]:
    # Playwright's sync API runs an event loop in this thread; the Django ORM
    # calls the tests make around it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(locale="pt-BR", viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
            # Inside Playwright's context Django's connection handler sees
            # another context and opens its own connection; close it here or it
            # outlives the test and blocks dropping the test database.
            connections.close_all()


def admin_form_login(page: Page, base_url: str, *, username: str, password: str) -> None:
    """Log in through the admin's login form, as a person does."""
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
