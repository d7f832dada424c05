"""Find the new text in a reply: the End of Message Marker, then quote patterns.

Our outgoing mail carries a marker line ("##- Please type your reply above this line
-##"); everything from that line down is our own message quoted back. Where a client
dropped the marker we fall back to the patterns mail clients use to introduce a
quotation: "On <date>, <name> wrote:" (in several languages), "-----Original
Message-----", Outlook's From:/Sent:/To:/Subject: block, trailing ">" quotes,
signatures and "Sent from my iPhone".

Inline answers between quoted lines are kept: losing a customer's answer is worse
than showing a quote. Forwarded messages are kept too: they are the content.
"""

from __future__ import annotations

import re

from webapp.mail.sanitize import strip_html_to_text

__all__ = ["extract_reply", "strip_html_to_text"]

_QUOTE_PREFIX = re.compile(r"^(?:[ \t]*>)+")
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u00a0"

# Words that open an attribution line ("On ... wrote:") and the verbs in it.
_INTRO = re.compile(r"^[-\s]*(on|am|le|el|op|den|il|em|w dniu|dnia|pe|dne|dňa|в|el día)\b", re.I)
_VERB = re.compile(
    r"\b(wrote|writes|schrieb|a écrit|escribió|escrito|schreef|skrev|kirjoitti|scrisse|"
    r"ha scritto|escreveu|napisał\(a\)|napisała|napisał|napsal|írta|написал|написала|"
    r"пишет|yazdı)\b|écrit",
    re.I,
)
_ENDS_WITH_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?\s*:$")
_ORIGINAL_MESSAGE = re.compile(
    r"^[\s*]*-{2,}\s*(original message|original|ursprüngliche nachricht|"
    r"message d'origine|mensaje original|oorspronkelijk bericht|originalmeddelande|"
    r"oprindelig meddelelse|opprinnelig melding|wiadomość oryginalna|messaggio originale|"
    r"mensagem original|исходное сообщение)\s*-{2,}[\s*]*$",
    re.I,
)
_FORWARD = re.compile(
    r"^[\s*]*(-{2,}\s*(forwarded message|weitergeleitete nachricht|message transféré|"
    r"mensaje reenviado|doorgestuurd bericht|videresendt meddelelse|vidarebefordrat meddelande)"
    r"\s*-{2,}|begin forwarded message:|anfang der weitergeleiteten nachricht:|"
    r"début du message réexpédié\s?:)",
    re.I,
)
# Outlook-style header block: "From:" followed closely by Sent/Date/To/Subject lines.
_HEADER_FROM = re.compile(r"^[\s*]*(from|von|de|fra|från|van|od|da|от)[\s*]*:", re.I)
_HEADER_FIELD = re.compile(
    r"^[\s*]*(sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|date d'envoi|à|"
    r"objet|enviado|fecha|para|asunto|sendt|til|emne|skickat|till|ämne|verzonden|aan|"
    r"onderwerp|wysłano|data|do|temat|inviato|oggetto|a|отправлено|кому|тема)[\s*]*:",
    re.I,
)
_SEPARATOR = re.compile(r"^\s*([-_=*])\1{2,}\s*$")
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE_TAIL = re.compile(
    r"^(sent from my [\w\- ]{1,40}|sent from (mail|outlook|yahoo mail) for [\w\- ]{1,30}|"
    r"get outlook for (ios|android)\b.*|sent with sparrow\b.*|sent from yahoo mail\b.*|"
    r"von meinem [\w\- ]{1,30} gesendet|envoyé de mon [\w\- ]{1,30}|"
    r"enviado desde mi [\w\- ]{1,30}|verzonden (vanaf|met) (mijn )?[\w\- ]{1,30}|"
    r"skickat från min [\w\- ]{1,30}|sendt fra min [\w\- ]{1,30})\.?$",
    re.I,
)
_MAILING_LIST = re.compile(r"mailing list|unsubscribe", re.I)
_MAX_ATTRIBUTION = 400
# A person's reply is at the top; past this many lines it is pasted logs or a quoted
# thread, and scanning it would only cost time (the full text is stored anyway).
_MAX_LINES = 20_000


def extract_reply(text: str, marker: str | None) -> str:
    """The text a person wrote in reply, without our quoted message or theirs."""
    if not text or not text.strip():
        return ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if marker and marker.strip():
        index = _find_marker(lines, marker)
        if index is not None:
            kept = lines[:index]
            before = _text_before_marker(lines[index], marker)
            if before.strip():
                kept.append(before)
            return _finish(_trim_tail(kept, signatures=False), text)
    lines = lines[:_MAX_LINES]
    forward = _forward_start(lines)
    lines, forwarded = lines[:forward], lines[forward:]
    lines = lines[: _hard_cut(lines)]
    lines = _drop_leading_quote(lines)
    lines = _trim_tail(lines, signatures=True) if lines else lines
    if forwarded:
        lines = [*lines, "", *forwarded] if lines else forwarded
    return _finish(lines, text)


def _forward_start(lines: list[str]) -> int:
    """Index of a "Forwarded message" line: what follows is content, not a quote."""
    for index, line in enumerate(lines):
        if _FORWARD.match(line):
            return index
    return len(lines)


def _finish(lines: list[str], original: str) -> str:
    result = "\n".join(line.rstrip() for line in lines).strip("\n")
    return result if result.strip() else original.strip()


def _unquoted(line: str) -> str:
    return _QUOTE_PREFIX.sub("", line)


def _is_quoted(line: str) -> bool:
    return bool(_QUOTE_PREFIX.match(line))


def _is_blank(line: str) -> bool:
    return not line.strip(" \t" + _INVISIBLE)


def _squash(line: str) -> str:
    return re.sub(r"\s+", "", line).lower()


def _find_marker(lines: list[str], marker: str) -> int | None:
    """Index of the line where the marker starts, even if quoted or wrapped over 3 lines."""
    wanted = _squash(marker)
    squashed = [_squash(_unquoted(line)) for line in lines]
    for index, line in enumerate(squashed):
        if not line:
            continue
        if wanted in line:
            return index
        joined = line
        for following in squashed[index + 1 : index + 3]:
            if wanted in following:
                break
            joined += following
            if wanted in joined:
                return index
    return None


def _text_before_marker(line: str, marker: str) -> str:
    """What shares the marker's line in front of it (HTML bodies run lines together)."""
    pattern = r"\s*".join(re.escape(ch) for ch in re.sub(r"\s+", "", marker))
    match = re.search(pattern, _unquoted(line), re.I)
    return _unquoted(line)[: match.start()] if match else ""


def _attribution_at(lines: list[str], index: int, strict: bool) -> int:
    """Number of lines (1-3) of an attribution line starting at `index`, else 0."""
    parts: list[str] = []
    for line in lines[index : index + 3]:
        if _is_blank(line) or _is_quoted(line):
            return 0
        parts.append(line.strip(" \t" + _INVISIBLE))
        candidate = " ".join(parts)
        if len(candidate) > _MAX_ATTRIBUTION:
            return 0
        if _is_attribution(candidate, strict):
            return len(parts)
        if candidate.endswith(":") or not _could_start_attribution(parts[0]):
            return 0
    return 0


def _could_start_attribution(line: str) -> bool:
    """A wrapped attribution's first line has its intro word or its date."""
    return bool(_INTRO.match(line)) or any(ch.isdigit() for ch in line)


def _is_attribution(line: str, strict: bool) -> bool:
    """ "On <date>, <name> wrote:" and its relatives; `strict` also wants a date in it."""
    if not line.endswith(":"):
        return False
    dated = any(ch.isdigit() for ch in line)
    if _VERB.search(line):
        return dated or (not strict and bool(_INTRO.match(line) or len(line) < 80))
    return dated and bool(_ENDS_WITH_ADDRESS.search(line))


def _header_block_at(lines: list[str], index: int) -> bool:
    """An Outlook-style "From: / Sent: / To: / Subject:" block starts at `index`."""
    if not (_HEADER_FROM.match(lines[index]) or _HEADER_FIELD.match(lines[index])):
        return False
    block = lines[index : index + 8]
    fields = sum(1 for line in block if _HEADER_FIELD.match(line) or _HEADER_FROM.match(line))
    return fields >= 3 and any(_HEADER_FROM.match(line) for line in block)


def _next_content(lines: list[str], index: int) -> str | None:
    for line in lines[index:]:
        if not _is_blank(line):
            return line
    return None


def _hard_cut(lines: list[str]) -> int:
    """Where an unquoted original message starts (everything below it goes), or len(lines)."""
    for index, line in enumerate(lines):
        if _is_blank(line) or _is_quoted(line):
            continue
        if _ORIGINAL_MESSAGE.match(line) or _header_block_at(lines, index):
            return _back_over_separators(lines, index)
        size = _attribution_at(lines, index, strict=True)
        if size:
            following = _next_content(lines, index + size)
            if following is None or not _is_quoted(following):
                return _back_over_separators(lines, index)
    return len(lines)


def _back_over_separators(lines: list[str], index: int) -> int:
    """Include blank lines and a "_____" / "-----" separator line above a cut."""
    while index > 0 and (_is_blank(lines[index - 1]) or _SEPARATOR.match(lines[index - 1])):
        index -= 1
    return index


def _drop_leading_quote(lines: list[str]) -> list[str]:
    """Bottom-posting: drop an opening attribution + quote when only new text follows it."""
    index = 0
    while index < len(lines) and _is_blank(lines[index]):
        index += 1
    start = index
    index += _attribution_at(lines, index, strict=False) if index < len(lines) else 0
    while index < len(lines) and _is_blank(lines[index]):
        index += 1
    if index >= len(lines) or not _is_quoted(lines[index]):
        return lines
    while index < len(lines) and (_is_quoted(lines[index]) or _is_blank(lines[index])):
        index += 1
    rest = lines[index:]
    if not rest or any(_is_quoted(line) for line in rest):
        return lines  # nothing after it, or inline answers: keep the quotes as context
    return lines[:start] + rest


def _trim_tail(lines: list[str], signatures: bool) -> list[str]:
    """Repeatedly drop what trails the new text: quotes, attributions, signatures."""
    end = len(lines)
    while True:
        while end and _is_blank(lines[end - 1]):
            end -= 1
        if not end:
            return []
        if _is_quoted(lines[end - 1]):
            while end and (_is_quoted(lines[end - 1]) or _is_blank(lines[end - 1])):
                end -= 1
            continue
        # Only the last lines matter; a window keeps each step cheap on huge input.
        start = max(0, end - 20)
        cut = _tail_cut(lines[start:end], signatures)
        if cut is None:
            return lines[:end]
        end = start + cut


def _tail_cut(lines: list[str], signatures: bool) -> int | None:
    """Start of a trailing attribution, header block, separator or signature, if any."""
    for size in (3, 2, 1):  # longest first: "wrote:" alone may end a wrapped one
        start = len(lines) - size
        if start >= 0 and _attribution_at(lines, start, strict=False) == size:
            return start
    if _SEPARATOR.match(lines[-1]) or _ORIGINAL_MESSAGE.match(lines[-1]):
        return len(lines) - 1
    for start in range(max(0, len(lines) - 12), len(lines)):
        if _header_block_at(lines, start):
            return _back_over_separators(lines, start)
    if not signatures:
        return None
    if _MOBILE_TAIL.match(lines[-1].strip(" \t" + _INVISIBLE)):
        return len(lines) - 1
    for start in range(len(lines) - 1, max(-1, len(lines) - 16), -1):
        if _SIGNATURE.match(lines[start]) and start > 0:
            return start
        if _SEPARATOR.match(lines[start]) and any(
            _MAILING_LIST.search(line) for line in lines[start + 1 : start + 3]
        ):
            return start  # a mailing list footer
    return None
