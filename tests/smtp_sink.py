"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1, writing every message it
accepts to DIR as <n>.eml before it answers 250, so a test reads what was delivered.

Usage: python smtp_sink.py PORT DIR [options]
  --cert FILE --key FILE   the server's certificate chain and key (PEM), for the TLS options
  --starttls               offer STARTTLS and refuse mail until it was used
  --implicit-tls           TLS from the first byte (smtps)
  --auth USER:PASSWORD     require AUTH (PLAIN or LOGIN) with these credentials before mail
  --reject ADDRESS         answer RCPT TO for ADDRESS with 550 (repeatable)
Prints "ready" on stdout once it listens. Failed AUTH attempts are counted in DIR/auth-failures.
"""

import argparse
import itertools
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory, reject):
        self.directory = directory
        self.reject = {a.lower() for a in reject}
        self.counter = itertools.count()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = "%d-%d.eml" % (os.getpid(), next(self.counter))
        tmp = os.path.join(self.directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 OK"


class Authenticator:
    def __init__(self, directory, user, password):
        self.directory = directory
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        ):
            return AuthResult(success=True)
        with open(os.path.join(self.directory, "auth-failures"), "a") as f:
            f.write(mechanism + "\n")
        return AuthResult(success=False, handled=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("dir")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--reject", action="append", default=[])
    args = parser.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {}
    if args.starttls:
        kwargs.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)
        kwargs.update(
            authenticator=Authenticator(args.dir, user, password),
            auth_required=True,
            # Over implicit TLS aiosmtpd does not see the encryption; the socket is encrypted.
            auth_require_tls=not args.implicit_tls,
        )
    if args.implicit_tls:
        kwargs.update(ssl_context=context)

    controller = Controller(
        Sink(args.dir, args.reject), hostname="127.0.0.1", port=args.port, **kwargs
    )
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
