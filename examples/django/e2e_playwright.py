#!/usr/bin/env python3
"""A person signing in to the Django example through portvakt, in headless Chromium.

Opens /private/, is sent to portvakt's login page, fills "Email" and "Password", clicks
"Sign in", then "Allow" on the consent page, and must land on /private/ showing the email.
Then signs out (RP-initiated logout through portvakt), lands on the home page, and the next
visit to /private/ asks for the password again.

Prints one JSON line ({"ok": true, "checks": [...]} or {"ok": false, "step", "error"}) and
exits 1 on failure.

    python e2e_playwright.py --app http://localhost:8000 --email a@example.com --password '...'

Chromium: /usr/bin/chromium (Debian's), or the one PORTVAKT_CHROMIUM names.
"""

import argparse
import json
import os
import re
import sys

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 20_000


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--app", required=True, help="the Django site's origin, e.g. http://localhost:8000")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--screenshot", help="save a PNG of the page on failure here")
    args = p.parse_args()
    app = args.app.rstrip("/")
    chromium = os.environ.get("PORTVAKT_CHROMIUM", "/usr/bin/chromium")

    checks = []
    step = "launch"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            step = "login_page"
            page.goto(app + "/private/")
            email = page.get_by_label("Email")
            expect(email).to_be_visible()
            if page.url.startswith(app):
                raise AssertionError(f"expected portvakt's login page, still on {page.url}")
            checks.append("redirected_to_portvakt_login")

            step = "sign_in"
            email.fill(args.email)
            page.get_by_label("Password").fill(args.password)
            page.get_by_role("button", name="Sign in").click()

            step = "consent"
            page.get_by_role("button", name="Allow").click()
            checks.append("login_and_consent")

            step = "private_page"
            page.wait_for_url(re.compile("^" + re.escape(app + "/private/") + "$"))
            expect(page.locator("#email")).to_have_text(args.email)
            checks.append("private_page_shows_email")

            step = "sign_out"
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(re.compile("^" + re.escape(app + "/") + r"(\?.*)?$"))
            expect(page.get_by_role("link", name="Sign in with portvakt")).to_be_visible()
            checks.append("rp_initiated_logout_returns_home")

            step = "signed_out_everywhere"
            page.goto(app + "/private/")
            expect(page.get_by_label("Password")).to_be_visible()
            checks.append("portvakt_session_ended")
        except (AssertionError, PlaywrightError) as e:
            if args.screenshot:
                try:
                    page.screenshot(path=args.screenshot, full_page=True)
                except PlaywrightError:
                    pass
            message = str(e).strip().splitlines()
            detail = " | ".join(message[:6])
            print(json.dumps({"rp": "django", "ok": False, "checks": checks, "step": step, "error": detail, "url": page.url}), flush=True)
            print(f"Django example failed at {step} on {page.url}: {detail}", file=sys.stderr)
            return 1
        finally:
            browser.close()
    print(json.dumps({"rp": "django", "ok": True, "checks": checks}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
