"""A real browser as the passkey client for the tests: Chromium (through Playwright) with a
virtual CTAP2 authenticator that holds discoverable credentials and verifies the user.

Usage: webauthn_browser.py ORIGIN. Opens ORIGIN/health so that pages run on that origin,
prints "ready", then answers one JSON command per input line with one JSON line:
  {"op": "create", "options": <creation options JSON>}  -> {"ok": RegistrationResponseJSON}
  {"op": "get", "options": <request options JSON>}      -> {"ok": AuthenticationResponseJSON}
  {"op": "credentials"}                                 -> {"ok": [credentials the authenticator holds]}
A ceremony the browser refuses answers {"error": "..."}.

The options go through the browser's own PublicKeyCredential.parse*OptionsFromJSON and the
answer through toJSON(), exactly as a web page using the WebAuthn Level 3 JSON API would.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

CREATE = """async (options) => {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    const credential = await navigator.credentials.create({ publicKey });
    return credential.toJSON();
}"""

GET = """async (options) => {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const credential = await navigator.credentials.get({ publicKey });
    return credential.toJSON();
}"""


def main():
    origin = sys.argv[1]
    chromium = os.environ.get("PORTVAKT_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(origin + "/health")
        cdp = page.context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "ctap2Version": "ctap2_1",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )["authenticatorId"]
        print("ready", flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            try:
                if command["op"] == "create":
                    result = page.evaluate(CREATE, command["options"])
                elif command["op"] == "get":
                    result = page.evaluate(GET, command["options"])
                elif command["op"] == "credentials":
                    result = cdp.send(
                        "WebAuthn.getCredentials", {"authenticatorId": authenticator}
                    )["credentials"]
                else:
                    raise ValueError("unknown op " + command["op"])
                print(json.dumps({"ok": result}), flush=True)
            except Exception as e:  # the test reads the refusal and decides
                print(json.dumps({"error": str(e)}), flush=True)
        browser.close()


if __name__ == "__main__":
    main()
