#!/usr/bin/python3
"""An SMTP receiver that is not postcast, for the outbound tests: Debian's aiosmtpd
(python3-aiosmtpd) on 127.0.0.1 and an ephemeral port, printed as the first line of
stdout. Every message is kept exactly as it arrived after dot-unstuffing (aiosmtpd's
`original_content`, bytes untouched) in OUT/N.eml, with its envelope in OUT/N.json;
N.eml appears only once complete. No STARTTLS, no AUTH. Runs until stdin closes.

Usage: smtp_receiver.py OUT
"""

import asyncio
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Keep:
    """Writes each message and its envelope to the output folder."""

    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.out, str(self.count))
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(base + ".part", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".part", base + ".eml")
        return "250 2.0.0 Kept"


async def main(out):
    loop = asyncio.get_running_loop()
    keep = Keep(out)
    server = await loop.create_server(
        lambda: SMTP(keep, hostname="mx.remote.test", decode_data=False, enable_SMTPUTF8=True),
        "127.0.0.1",
        0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
