#!/usr/bin/python3
"""An SMTP server for kha's tests (Debian's python3-aiosmtpd) that keeps
every message it accepts, with its envelope, as a file.

    smtp-sink.py DIR [--tls starttls|tls CERT KEY] [--auth USER PASSWORD]

Listens on a loopback port of its own choosing and prints it, alone on the
first line of stdout, once it accepts connections. Each accepted message
becomes DIR/<n>.json: {"mail_from", "rcpt_tos", "data"} (data: the message
as sent, headers and body). Recipients say how the server answers them:
a local part starting with "refuse" gets 550 (permanent), one starting
with "later" gets 451 (temporary). With --tls starttls the server offers
STARTTLS and requires it; with --tls tls it speaks TLS from the first byte.
With --auth, AUTH PLAIN/LOGIN with that user and password is required.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("dir")
parser.add_argument("--tls", nargs=3, metavar=("MODE", "CERT", "KEY"))
parser.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
args = parser.parse_args()


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("refuse"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("later"):
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(args.dir, "%04d.json" % self.count)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        # Written whole, then renamed: a reader never sees half a message.
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 Ok: queued as %04d" % self.count


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    ok = (auth_data.login.decode(), auth_data.password.decode()) == tuple(args.auth)
    # handled=False: aiosmtpd answers (235, or 535 for a wrong password).
    return AuthResult(success=ok, handled=False)


async def main():
    loop = asyncio.get_running_loop()
    sink = Sink()
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls[1], args.tls[2])
    starttls = args.tls is not None and args.tls[0] == "starttls"

    def protocol():
        return SMTP(
            sink,
            hostname="sink.test",
            tls_context=context if starttls else None,
            require_starttls=starttls,
            authenticator=authenticator if args.auth else None,
            auth_required=args.auth is not None,
            auth_require_tls=False,
            loop=loop,
        )

    implicit = context if args.tls and args.tls[0] == "tls" else None
    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
