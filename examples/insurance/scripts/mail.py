#!/usr/bin/env python3
"""The demo's mail ends (standard library only).

    mail.py send --imap 127.0.0.1:10143 --user sluice --password-env SLUICE_MAIL_PASSWORD --ca output/imap-ca.pem
        puts the insurer's two daily e-mails into the mailbox's INBOX (IMAP APPEND over STARTTLS):
        "Asegurados Salud Internacional – DATE" with samples/asegurados_si.csv, and
        "Asegurados Viajeros – DATE" with samples/asegurados_viajeros.xlsx.
    mail.py show FILE.eml
        prints a received message: its headers, its text part and the names of its attachments.
"""

import argparse
import email
import email.policy
import email.utils
import imaplib
import os
import ssl
import sys
import time
from email.message import EmailMessage

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def message(subject, attachment, mime):
    m = EmailMessage()
    m["From"] = "Aseguradora Informes <informes@aseguradora.example>"
    m["To"] = "Pólizas <sluice@humano.example>"
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=False)
    m["Message-ID"] = email.utils.make_msgid(domain="aseguradora.example")
    m.set_content("Buenos días,\n\nadjuntamos los asegurados del día.\n\nSaludos,\nInformes\n")
    with open(os.path.join(HERE, "samples", attachment), "rb") as f:
        maintype, subtype = mime.split("/")
        m.add_attachment(f.read(), maintype=maintype, subtype=subtype, filename=attachment)
    return m


def send(args):
    host, port = args.imap.rsplit(":", 1)
    password = os.environ.get(args.password_env)
    if not password:
        sys.exit("mail.py: %s is not set" % args.password_env)
    day = time.strftime("%d/%m/%Y")
    messages = [
        message("Asegurados Salud Internacional – %s" % day, "asegurados_si.csv", "text/csv"),
        message("Asegurados Viajeros – %s" % day, "asegurados_viajeros.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ]
    imap = imaplib.IMAP4(host, int(port))
    imap.starttls(ssl.create_default_context(cafile=args.ca))
    imap.login(args.user, password)
    for m in messages:
        typ, data = imap.append("INBOX", None, imaplib.Time2Internaldate(time.time()), m.as_bytes(policy=email.policy.SMTP))
        if typ != "OK":
            sys.exit("mail.py: APPEND failed: %r" % data)
        print("sent %s  %s  (%s attached)" % (m["Message-ID"], m["Subject"], next(m.iter_attachments()).get_filename()))
    imap.logout()


def show(args):
    with open(args.file, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    for name in ["From", "To", "Subject", "Date"]:
        print("%-8s %s" % (name + ":", m[name]))
    body = m.get_body(preferencelist=("plain",))
    print()
    print(body.get_content() if body else "(no text part)")
    for part in m.iter_attachments():
        print("attachment: %s (%s, %d bytes)" % (part.get_filename(), part.get_content_type(), len(part.get_payload(decode=True) or b"")))
    html = m.get_body(preferencelist=("html",))
    if html:
        print("html part: %d characters" % len(html.get_content()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send")
    s.add_argument("--imap", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--password-env", required=True)
    s.add_argument("--ca", required=True)
    w = sub.add_parser("show")
    w.add_argument("file")
    args = parser.parse_args()
    {"send": send, "show": show}[args.command](args)


if __name__ == "__main__":
    main()
