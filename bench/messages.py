"""Deterministic, realistic help-desk mail for the benchmark (seeded: same seed, same bytes).

Mix: plain text, multipart/alternative (text + HTML), 1–3 attachments of 5–200 KB
(random bytes, base64), threads (replies with In-Reply-To/References and "Re:"
subjects, quoted text, some with the [#N] case token and no threading headers),
a few non-ASCII charsets (ISO-8859-1, windows-1252, KOI8-R, ISO-2022-JP) and
RFC 2047 names and subjects. CRLF line endings, as a server hands them out.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

SUPPORT = Address("Acme Support", "support", "acme.example")
AGENTS = [
    Address("Dana Reyes", "dana", "acme.example"),
    Address("Tom Becker", "tom", "acme.example"),
    Address("Priya Nair", "priya", "acme.example"),
]
FIRST = [
    "Alice",
    "Bob",
    "Carol",
    "David",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Yusuf",
    "Zoë",
    "José",
    "Søren",
    "Françoise",
    "Jürgen",
    "Ólafur",
]
LAST = [
    "Smith",
    "Jones",
    "Müller",
    "García",
    "Dubois",
    "Rossi",
    "Novak",
    "Kowalski",
    "Hansen",
    "Silva",
    "Nguyen",
    "Okafor",
    "Andersson",
    "O'Brien",
    "Fernández",
    "Łukasiewicz",
]
DOMAINS = [
    f"{w}.example"
    for w in (
        "northwind",
        "contoso",
        "fabrikam",
        "initech",
        "globex",
        "umbrella",
        "hooli",
        "vandelay",
        "wonka",
        "stark",
        "wayne",
        "tyrell",
        "cyberdyne",
        "soylent",
        "aperture",
        "blackmesa",
        "oscorp",
        "gringotts",
        "monsters",
        "pied-piper",
    )
] + ["mail.example", "webmail.example"]
TOPICS = [
    "Invoice",
    "Login problem",
    "Password reset",
    "Order",
    "Refund request",
    "Delivery delayed",
    "Cannot export report",
    "Question about pricing",
    "Account locked",
    "Bug in the dashboard",
    "Feature request",
    "Contract renewal",
    "VPN access",
    "Printer offline",
    "Upgrade to the new plan",
    "Data import failed",
    "Wrong VAT on invoice",
    "API rate limit",
    "SSO with Azure AD",
    "Mobile app crash",
]
WORDS = (
    "the a we you it is was not can please our your order account invoice system error "
    "message screen report attached file since yesterday morning again still working "
    "problem help thanks kind regards update version server customer team support "
    "details number reference payment shipping address change request issue urgent "
    "today week month colleague manager department access password login export import "
    "settings browser chrome firefox windows mac phone app sync data backup"
).split()
# (charset, sample text) for the non-UTF-8 bodies.
CHARSETS = [
    ("iso-8859-1", "Grüße aus München, die Änderung ist übermäßig teuer. Ça coûte très cher."),
    ("windows-1252", "“Smart quotes” – and an en dash… the total is €1.250,00 as agreed."),
    ("koi8-r", "Здравствуйте! Не могу войти в личный кабинет, пароль не подходит."),
    ("iso-2022-jp", "お世話になっております。請求書が届いていません。ご確認ください。"),
]
ATTACHMENT_TYPES = [
    ("application", "pdf", "pdf"),
    ("image", "png", "png"),
    ("image", "jpeg", "jpg"),
    ("application", "zip", "zip"),
    ("text", "csv", "csv"),
    ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
]


@dataclass
class _Thread:
    number: int  # the case number the engine will give it (roots are filed in order)
    subject: str
    customer: Address
    ids: list[str] = field(default_factory=list)
    last_body: str = ""


class MailFactory:
    """Yields raw messages; the same seed always gives the same sequence of bytes."""

    def __init__(self, seed: int = 5000) -> None:
        self.rnd = random.Random(seed)
        self.start = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
        self.customers = [self._person() for _ in range(400)]
        self.threads: list[_Thread] = []
        self.count = 0

    def _person(self) -> Address:
        r = self.rnd
        first, last = r.choice(FIRST), r.choice(LAST)
        if r.random() < 0.03:
            first, last = r.choice([("Иван", "Петров"), ("山田", "太郎"), ("Αθηνά", "Παππά")])
        local = f"{first}.{last}".lower().encode("ascii", "ignore").decode() or "user"
        local = "".join(c for c in local if c.isalnum() or c == ".").strip(".") or "user"
        return Address(f"{first} {last}", f"{local}{r.randint(1, 99)}", r.choice(DOMAINS))

    def _sentence(self) -> str:
        words = [self.rnd.choice(WORDS) for _ in range(self.rnd.randint(6, 18))]
        return " ".join(words).capitalize() + self.rnd.choice([".", ".", ".", "?", "!"])

    def _paragraphs(self) -> list[str]:
        return [
            " ".join(self._sentence() for _ in range(self.rnd.randint(2, 6)))
            for _ in range(self.rnd.randint(1, 6))
        ]

    @staticmethod
    def _wrap(text: str, width: int = 72) -> str:
        out, line = [], ""
        for word in text.split():
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        return "\n".join([*out, line])

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self.next()

    def next(self) -> bytes:
        r = self.rnd
        i = self.count
        self.count += 1
        date = self.start + timedelta(minutes=7 * i + r.randint(0, 6))
        domain = r.choice(DOMAINS)
        message_id = f"<{i}.{r.getrandbits(48):012x}@{domain}>"
        paragraphs = self._paragraphs()
        msg = EmailMessage(policy=policy.SMTP)
        thread = self._pick_thread() if self.threads and r.random() < 0.45 else None
        quoted = ""
        if thread is None:
            customer = r.choice(self.customers)
            subject = f"{r.choice(TOPICS)} {r.randint(1000, 99999)}"
            if r.random() < 0.05:
                subject += " – Rückfrage zur Bestellung"
            thread = _Thread(number=len(self.threads) + 1, subject=subject, customer=customer)
            self.threads.append(thread)
            sender, to = customer, SUPPORT
            msg["Subject"] = subject
        else:
            by_agent = r.random() < 0.4
            sender = r.choice(AGENTS) if by_agent else thread.customer
            to = thread.customer if by_agent else SUPPORT
            token_only = not by_agent and r.random() < 0.2
            tag = f"[#{thread.number}] " if token_only or r.random() < 0.3 else ""
            msg["Subject"] = f"Re: {tag}{thread.subject}"
            if not token_only:  # a token-only reply has lost its threading headers
                msg["In-Reply-To"] = thread.ids[-1]
                msg["References"] = " ".join(thread.ids[-10:])
            quoted = "\n".join("> " + line for line in thread.last_body.splitlines()[:40])
        msg["From"] = sender
        msg["To"] = to
        if r.random() < 0.1:
            msg["Cc"] = [r.choice(self.customers) for _ in range(r.randint(1, 3))]
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = message_id
        if r.random() < 0.3:
            msg["X-Mailer"] = r.choice(
                [
                    "Microsoft Outlook 16.0",
                    "Apple Mail (2.3731)",
                    "Thunderbird 115.8",
                    "Roundcube Webmail/1.6",
                ]
            )
        text = "\n\n".join(self._wrap(p) for p in paragraphs)
        text = f"Hello,\n\n{text}\n\nKind regards,\n{sender.display_name}\n"
        if quoted:
            text += f"\nOn {format_datetime(date - timedelta(hours=3))}, someone wrote:\n{quoted}\n"
        charset = "utf-8"
        if r.random() < 0.05:
            charset, sample = r.choice(CHARSETS)
            # names and quotes from other mails may not exist in that charset
            text = f"{sample}\n\n{text}".encode(charset, "replace").decode(charset)
        kind = r.random()
        if kind < 0.45:
            msg.set_content(text, charset=charset)
        else:
            msg.set_content(text, charset=charset)
            msg.add_alternative(self._html(paragraphs, sender, quoted), subtype="html")
        if r.random() < 0.12:
            for _ in range(r.randint(1, 3)):
                maintype, subtype, ext = r.choice(ATTACHMENT_TYPES)
                size = r.randint(5 * 1024, 200 * 1024)
                msg.add_attachment(
                    r.randbytes(size),
                    maintype=maintype,
                    subtype=subtype,
                    filename=f"{r.choice(['scan', 'report', 'invoice', 'screenshot'])}-"
                    f"{r.randint(1, 999)}.{ext}",
                )
        thread.ids.append(message_id)
        thread.last_body = text
        return msg.as_bytes(policy=policy.SMTP)

    def _pick_thread(self) -> _Thread:
        # Mostly recent threads, sometimes an old one.
        recent = self.threads[-150:]
        return self.rnd.choice(recent if self.rnd.random() < 0.85 else self.threads)

    def _html(self, paragraphs: list[str], sender: Address, quoted: str) -> str:
        r = self.rnd
        body = "".join(f'<p style="margin:0 0 12px 0">{p}</p>\n' for p in paragraphs)
        if r.random() < 0.3:
            rows = "".join(
                f"<tr><td>{r.choice(WORDS)}</td><td>{r.randint(1, 999)}.00</td></tr>"
                for _ in range(r.randint(2, 12))
            )
            body += f'<table border="1" cellpadding="4">{rows}</table>\n'
        if r.random() < 0.3:
            body += '<p><a href="https://portal.acme.example/t/123">Open the portal</a></p>\n'
        if quoted:
            escaped = quoted.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            body += f'<blockquote type="cite"><pre>{escaped}</pre></blockquote>\n'
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8">'
            "<style>body{font-family:Arial,sans-serif;font-size:14px}</style></head>"
            f"<body><div>Hello,</div>\n{body}<div>Kind regards,<br>{sender.display_name}</div>"
            "</body></html>\n"
        )
