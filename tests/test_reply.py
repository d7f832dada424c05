"""extract_reply: the End of Message Marker first, then the quote patterns of mail clients."""

from __future__ import annotations

import quopri
from pathlib import Path

import pytest

from tests.helpers.cpu_budget import within_cpu_budget
from tests.helpers.messages import MARKER
from webapp.mail.reply import extract_reply, strip_html_to_text

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")


def lines(*parts: str) -> str:
    return "\n".join(parts)


# -- the End of Message Marker -----------------------------------------------------


def test_marker_keeps_only_what_is_above_it():
    text = lines("Thanks, that fixed it.", "", MARKER, "", "Your case #7 was updated.")
    assert extract_reply(text, MARKER) == "Thanks, that fixed it."


def test_marker_drops_the_attribution_line_above_it():
    text = lines(
        "Works now.",
        "",
        "On Mon, 2 Mar 2026 at 17:01, Support <support@desk.example.com> wrote:",
        "> " + MARKER,
        "> Your case #7 was updated.",
    )
    assert extract_reply(text, MARKER) == "Works now."


def test_marker_wrapped_and_quoted_by_the_client():
    text = lines(
        "Here are the logs you asked for.",
        "",
        "Support <support@desk.example.com> schrieb am Mo., 2. März 2026, 17:01:",
        ">   ##- Please type your reply",
        "> above this line -##",
        ">",
        "> Hello Anna,",
    )
    assert extract_reply(text, MARKER) == "Here are the logs you asked for."


def test_marker_compared_without_case_or_spacing():
    text = lines("ok", "##-please TYPE your reply   above this line-##", "old")
    assert extract_reply(text, MARKER) == "ok"


def test_marker_sharing_a_line_with_text():
    text = "Thanks! " + MARKER + " Your case was updated."
    assert extract_reply(text, MARKER) == "Thanks!"


def test_marker_drops_an_outlook_header_block_above_it():
    text = lines(
        "Please close the case.",
        "",
        "________________________________",
        "From: Support <support@desk.example.com>",
        "Sent: Monday, March 2, 2026 5:01 PM",
        "To: Anna Berg <anna@example.org>",
        "Subject: [Case #7] Printer",
        "",
        MARKER,
    )
    assert extract_reply(text, MARKER) == "Please close the case."


def test_marker_keeps_signature_and_inline_text_above_it():
    text = lines("Done.", "", "-- ", "Anna", "", MARKER)
    assert extract_reply(text, MARKER) == "Done.\n\n--\nAnna"  # trailing spaces trimmed


def test_nothing_above_the_marker_returns_the_text():
    text = lines(MARKER, "typed below the line")
    assert extract_reply(text, MARKER) == text


def test_absent_marker_falls_back_to_quote_patterns():
    text = lines("Fine.", "", "On Tue, Mar 3, 2026 at 9:00 AM Bob <bob@example.com> wrote:", "> hi")
    assert extract_reply(text, MARKER) == "Fine."


# -- quote patterns ----------------------------------------------------------------

ATTRIBUTIONS = [
    "On Tue, Mar 3, 2026 at 9:00 AM Bob Smith <bob@example.com> wrote:",
    "On 03/03/2026 09:00, Bob Smith wrote:",
    "Am Di., 3. März 2026 um 09:00 Uhr schrieb Bob Smith <bob@example.com>:",
    "Le mar. 3 mars 2026 à 09:00, Bob Smith <bob@example.com> a écrit :",
    "El mar, 3 mar 2026 a las 9:00, Bob Smith (<bob@example.com>) escribió:",
    "Op di 3 mrt. 2026 om 09:00 schreef Bob Smith <bob@example.com>:",
    "Den 3. mar. 2026 kl. 09.00 skrev Bob Smith <bob@example.com>:",
    "tis 3 mars 2026 kl 09:00 skrev Bob Smith <bob@example.com>:",
    "2026年3月3日(火) 9:00 Bob Smith <bob@example.com>:",
]


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_attribution_then_quote(attribution):
    text = lines("New text here.", "", attribution, "", "> Old text.", "> More old text.")
    assert extract_reply(text, None) == "New text here."


@pytest.mark.parametrize("attribution", ATTRIBUTIONS[:7])
def test_attribution_then_unquoted_original(attribution):
    text = lines("New text here.", "", attribution, "", "Old text, not quoted.")
    assert extract_reply(text, None) == "New text here."


def test_attribution_wrapped_over_two_and_three_lines():
    two = lines(
        "Yes.",
        "",
        "On Tue, Mar 3, 2026 at 9:00 AM Bob Smith <",
        "bob@example.com> wrote:",
        "",
        "> question?",
    )
    three = lines(
        "Yes.",
        "On Dec 16, 2011, at 12:47 PM, Corey Donohoe",
        "<reply@reply.github.com>",
        "wrote:",
        "> question?",
    )
    assert extract_reply(two, None) == "Yes."
    assert extract_reply(three, None) == "Yes."


def test_original_message_separator():
    text = lines(
        "Sounds good.",
        "",
        "-----Original Message-----",
        "From: Bob [mailto:bob@example.com]",
        "Sent: Tuesday, March 03, 2026 9:00 AM",
        "To: Anna",
        "Subject: Meeting",
        "",
        "Shall we meet?",
    )
    assert extract_reply(text, None) == "Sounds good."


def test_outlook_header_block_with_underscore_separator():
    text = lines(
        "Attached.",
        "",
        "________________________________",
        "From: Bob <bob@example.com>",
        "Sent: Tuesday, March 3, 2026 09:00",
        "To: Anna <anna@example.org>",
        "Subject: Report",
        "",
        "Can you send the report?",
    )
    assert extract_reply(text, None) == "Attached."


def test_localised_outlook_header_block():
    text = lines(
        "Erledigt.",
        "",
        "Von: Bob <bob@example.com>",
        "Gesendet: Dienstag, 3. März 2026 09:00",
        "An: Anna <anna@example.org>",
        "Betreff: Bericht",
        "",
        "Bitte den Bericht schicken.",
    )
    assert extract_reply(text, None) == "Erledigt."


def test_trailing_quote_without_attribution():
    text = lines("Agreed.", "", "> Shall we ship on Friday?", ">", "> Bob")
    assert extract_reply(text, None) == "Agreed."


def test_inline_answers_are_kept_with_their_context():
    text = lines(
        "> Which version do you run?",
        "3.2",
        "",
        "> And the OS?",
        "Debian 12",
        "",
        "> Thanks, Bob",
    )
    assert extract_reply(text, None) == lines(
        "> Which version do you run?", "3.2", "", "> And the OS?", "Debian 12"
    )


def test_bottom_post_drops_the_leading_quote():
    text = lines("On 04/02/2026 06:26 PM, Bob wrote:", "> Hi", "Hello")
    assert extract_reply(text, None) == "Hello"


def test_signature_is_dropped():
    text = lines("See you then.", "", "-- ", "Anna Berg", "Example Corp", "+49 30 1234")
    assert extract_reply(text, None) == "See you then."


def test_dashes_inside_a_line_are_not_a_signature():
    text = "Fixed -- thanks.\nkthxbai"
    assert extract_reply(text, None) == text


@pytest.mark.parametrize(
    "tail",
    [
        "Sent from my iPhone",
        "Sent from my Android phone",
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Von meinem iPhone gesendet",
    ],
)
def test_mobile_tails_are_dropped(tail):
    assert extract_reply(lines("On my way.", "", tail), None) == "On my way."


def test_a_sentence_starting_like_a_mobile_tail_is_kept():
    text = "Here it is.\n\nSent from my desk, which is much easier than my phone."
    assert extract_reply(text, None) == text


def test_forwarded_message_is_content_not_a_quote():
    text = lines(
        "Please look at this.",
        "",
        "---------- Forwarded message ---------",
        "From: Shop <shop@example.org>",
        "Date: Tue, Mar 3, 2026 at 9:00 AM",
        "Subject: Order",
        "To: <anna@example.org>",
        "",
        "Your order shipped.",
    )
    assert "Your order shipped." in extract_reply(text, None)


def test_never_empty_when_everything_looks_quoted():
    text = lines("> only a quote", "> nothing else")
    assert extract_reply(text, None) == text
    assert extract_reply("   ", None) == ""
    assert extract_reply("", MARKER) == ""


def test_crlf_and_html_derived_text():
    html = (
        '<div>Works now!</div><div class="gmail_quote">On Tue, Mar 3, 2026 at 9:00 AM Bob '
        "&lt;bob@example.com&gt; wrote:<br><blockquote>Is it fixed?</blockquote></div>"
    )
    assert extract_reply(strip_html_to_text(html), None) == "Works now!"
    assert extract_reply("Yes.\r\n\r\nOn Tue, 3 Mar 2026, Bob wrote:\r\n> q\r\n", None) == "Yes."


@pytest.mark.parametrize(
    "text",
    [
        "Hi\n" + ">" * 200_000 + "\n" + "On x wrote: " * 20_000 + "\n> q\n",
        "Hi\n" + "Sent from my iPhone\n" * 200_000,
        "Hi\n" + "-- \n" * 200_000,
        "Hi\n" + "On Mon, 1 Jan 2026, X wrote:\n" * 100_000,
        "Hi\n" + " " * 1_000_000 + "\n",
    ],
)
def test_pathological_input_is_fast(text):
    assert within_cpu_budget(extract_reply, text, MARKER).startswith("Hi")


# -- the shared corpus -------------------------------------------------------------

REPLIES = CORPUS / "replies"

# file: (text that must be kept, text from the quoted part that must be gone)
EMAIL_REPLY_PARSER = {
    "correct_sig.txt": ("this is an email with a correct -- signature.", "rick"),
    "email_1_2.txt": ("You can list the keys for the bucket", "> -Abhishek Kona"),
    "email_1_3.txt": ("Having the function would be great.", "Russell Brown wrote"),
    "email_1_4.txt": ("Awesome! I haven't had another problem with it.", "Loader seems"),
    "email_1_6.txt": ("I get proper rendering as well.", "Was this caching related"),
    "email_1_7.txt": (":+1:", "Steps 0-2 are in prod"),
    "email_1_8.txt": ("and under this.", "Hey there, this is my signature"),
    "email_2_1.txt": ("Outlook with a reply", "Dear Google Apps Sync user"),
    "email_2_2.txt": ("Outlook with a reply directly above line", "A new comment has been"),
    "email_2_3.txt": ("Outlook with a reply directly above line", "A new comment has been"),
    "email_BlackBerry.txt": ("Here is another email", "Sent from my BlackBerry"),
    "email_bullets.txt": ("- and another", "Give us an example"),
    "email_iPhone.txt": ("Here is another email", "Sent from my iPhone"),
    "email_multi_word_sent_from_my_mobile_device.txt": ("Here is another email", "Verizon"),
    "email_one_is_not_on.txt": ("Locally (on development), when I run...", "lastLocation"),
    "email_sent_from_my_not_signature.txt": ("Sent from my desk, is much easier", "\x00"),
    "email_sig_delimiter_in_middle_of_line.txt": ("kthxbai", "\x00"),
    "greedy_on.txt": ("the tunnel is not working.", "George Plymale wrote"),
    "pathological.txt": ("get back to a computer.", "organism.sequence"),
}

MAIL_PARSER_REPLY = {
    "email_danish_1.txt": ("Anders Andersen", "Hvordan går det med projektet?"),
    "email_danish_2.txt": ("Jeg har modtaget filerne.", "Her er filerne du bad om."),
    "email_gmail.txt": ("replying to a github message", "personally too lazy"),
    "email_headers_no_delimiter.txt": ("And another reply!", "A reply"),
    "email_ja_1_2.txt": ("以上、よろしくお願いいたします", "かしこまりました"),
    "email_nl_1_2.txt": ("Outlook met een antwoord", "Beste Google Apps Sync-gebruiker"),
    "email_sv_anon_1.txt": ("flexibel fram till kl 15 idag.", "Ursäkta mitt sena svar"),
    "email_swedish_1.txt": ("Kan inte se att det står något", "Jag har försökt få tag"),
    "multi_header.txt": ("I’ll just start a new order.", "Unfortunately, we are unable"),
    "outlook.txt": ("My number is: +00 0000 000 000", "Get Outlook for iOS"),
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


@needs_corpus
@pytest.mark.parametrize("name", sorted(EMAIL_REPLY_PARSER))
def test_email_reply_parser_bodies(name):
    kept, gone = EMAIL_REPLY_PARSER[name]
    reply = extract_reply(read(REPLIES / "email_reply_parser" / name), None)
    assert kept in reply
    assert gone not in reply


@needs_corpus
@pytest.mark.parametrize("name", sorted(MAIL_PARSER_REPLY))
def test_mail_parser_reply_bodies(name):
    kept, gone = MAIL_PARSER_REPLY[name]
    reply = extract_reply(read(REPLIES / "mail-parser-reply" / name), None)
    assert kept in reply
    assert gone not in reply


@needs_corpus
def test_quoted_printable_body_once_decoded():
    raw = (REPLIES / "mail-parser-reply" / "begins_with_signature.txt").read_bytes()
    reply = extract_reply(quopri.decodestring(raw).decode("utf-8"), None)
    assert reply.endswith("Christopher Edwards")
    assert "Cody Hart" not in reply


@needs_corpus
@pytest.mark.parametrize("name", ["iphone", "sparrow"])
def test_talon_expected_reply_text(name):
    from webapp.mail.parse import parse_message

    expected = read(REPLIES / "talon" / "standard_replies" / f"{name}_reply_text").strip()
    msg = parse_message((CORPUS / "talon" / "standard_replies" / f"{name}.eml").read_bytes())
    reply = extract_reply(msg.text, None)
    # talon keeps signatures ("Sent from my iPhone"); we drop them, so ours is its start.
    assert reply == "Hello"
    assert expected.startswith(reply)
    assert "wrote:" not in reply
    assert ">" not in reply


@needs_corpus
def test_talon_standard_replies_all_reduce_to_hello():
    from webapp.mail.parse import parse_message

    for path in sorted((CORPUS / "talon" / "standard_replies").glob("*.eml")):
        msg = parse_message(path.read_bytes())
        assert extract_reply(msg.text, None) == "Hello", path.name


@needs_corpus
def test_talon_html_replies():
    for path in sorted((REPLIES / "talon" / "html_replies").glob("*.html")):
        reply = extract_reply(strip_html_to_text(read(path)), None)
        assert reply.startswith("Hi. I am fine."), path.name
        assert "How are you" not in reply, path.name
