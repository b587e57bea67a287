#!/usr/bin/env python3
"""A throwaway SMTP server for Sluice's SMTP client tests, on aiosmtpd, listening on 127.0.0.1 only.

    python3 scripts/test-smtp.py --port 0 --maildir DIR [--tls-cert CERT --tls-key KEY]
                                 [--user U --password P] [--auth-mechanisms LOGIN]
                                 [--reject-rcpt ADDR ...] [--hang]

Prints "ready PORT" on stdout once it listens (with --port 0 the kernel picks the port), then serves
until SIGTERM or SIGINT. Each message it accepts is saved in --maildir as one .eml file (written to a
temporary name, then renamed), preceded by X-Envelope-From and X-Envelope-To lines naming the
envelope. With a certificate it offers STARTTLS and requires it before anything else; with a user it
requires AUTH (PLAIN and LOGIN, or only the --auth-mechanisms given) before MAIL. --hang accepts
connections and never sends the greeting (a server that is stuck). For tests, never for real mail.
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
import uuid

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    print("test-smtp: aiosmtpd is not installed (pip install aiosmtpd)", file=sys.stderr)
    sys.exit(3)


class Handler:
    def __init__(self, maildir, rejected):
        self.maildir = maildir
        self.rejected = {address.lower() for address in rejected}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.rejected:
            return "550 5.1.1 <%s>: recipient rejected (test server --reject-rcpt)" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.maildir:
            head = "X-Envelope-From: <%s>\r\nX-Envelope-To: %s\r\n" % (
                envelope.mail_from, ", ".join("<%s>" % r for r in envelope.rcpt_tos))
            name = uuid.uuid4().hex
            tmp = os.path.join(self.maildir, "." + name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(head.encode("ascii", "replace"))
                f.write(envelope.original_content)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.maildir, name + ".eml"))
        return "250 2.0.0 OK: queued"


def main():
    parser = argparse.ArgumentParser(description="A throwaway SMTP server for tests.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--tls-cert", help="PEM certificate: offer (and require) STARTTLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--user", help="require AUTH as this user")
    parser.add_argument("--password", help="the user's password")
    parser.add_argument("--auth-mechanisms", default="PLAIN,LOGIN",
                        help="comma-separated mechanisms to offer (default PLAIN,LOGIN)")
    parser.add_argument("--maildir", help="save each accepted message here as NAME.eml")
    parser.add_argument("--reject-rcpt", action="append", default=[], metavar="ADDR",
                        help="answer 550 to RCPT TO this address (repeatable)")
    parser.add_argument("--hang", action="store_true", help="accept connections but never greet")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if args.maildir:
        os.makedirs(args.maildir, exist_ok=True)
    asyncio.run(serve(args))


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if args.hang:
        held = []

        async def hang(reader, writer):
            held.append(writer)
            await reader.read()   # until the client gives up
            writer.close()

        server = await asyncio.start_server(hang, "127.0.0.1", args.port)
    else:
        tls = None
        if args.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        offered = {m.strip().upper() for m in args.auth_mechanisms.split(",") if m.strip()}
        handler = Handler(args.maildir, args.reject_rcpt)

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == args.user.encode()
                  and auth_data.password == args.password.encode())
            return AuthResult(success=ok, handled=False)

        def factory():
            return SMTP(handler,
                        hostname="test-smtp.localhost",
                        tls_context=tls,
                        require_starttls=tls is not None,
                        auth_required=args.user is not None,
                        auth_require_tls=tls is not None,
                        auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in offered],
                        authenticator=authenticate if args.user is not None else None,
                        timeout=60)

        server = await loop.create_server(factory, "127.0.0.1", args.port)

    port = server.sockets[0].getsockname()[1]
    print("ready %d" % port, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    main()
